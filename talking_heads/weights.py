"""Which weights the app and the CLI use, and saying so.

Order of preference:

1. The Hugging Face Hub, when a repo id is configured: ``TALKING_HEADS_REPO_ID`` (e.g.
   ``owner/talking-heads-cpu``) at ``TALKING_HEADS_REVISION`` (a commit hash pins it; default
   ``main``), fetched with ``huggingface_hub.snapshot_download`` (honours ``HF_HUB_OFFLINE`` and
   the local cache; safetensors + JSON only, nothing is unpickled). The snapshot must be the
   pinned commit and every file must match the hash the Hub published for it
   (``verify_snapshot``); otherwise the Hub weights are not used and the notes say why.
2. The bundled ``checkpoints/<name>/`` folders (``config.json`` + ``model.safetensors``,
   optional ``discriminator.safetensors``, ``training.json`` and ``README.md`` model card).
   ``TALKING_HEADS_CHECKPOINT`` picks one by name; otherwise the folder named in
   ``checkpoints/DEFAULT`` (one line, the project's chosen default), and failing that the one
   with the most training steps recorded in ``training.json`` (then the newest), so dropping
   trained weights into ``checkpoints/`` needs no code change.
3. Nothing found: a randomly initialised ``warp`` model (seed 0), labelled UNTRAINED everywhere
   (an untrained warp model still renders the closed-form warp of the photo).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from talking_heads.config import ModelConfig
from talking_heads.models import TalkingHeadModel

ENV_REPO_ID = "TALKING_HEADS_REPO_ID"
ENV_REVISION = "TALKING_HEADS_REVISION"
ENV_CHECKPOINT = "TALKING_HEADS_CHECKPOINT"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
HUB_FILES = ["config.json", "model.safetensors", "discriminator.safetensors", "training.json",
             "README.md"]
UNTRAINED_CONFIG = "warp"  # architecture of the random stand-in model
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


class WeightsIntegrityError(RuntimeError):
    """Downloaded weights do not match the revision or the hashes the Hub published."""


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights came from. ``kind``: "hub", "bundled" or "untrained"."""

    kind: str
    directory: Path | None      # folder with config.json + model.safetensors (None: untrained)
    repo_id: str | None = None
    revision: str | None = None
    training_steps: int | None = None   # from training.json, when recorded
    notes: tuple[str, ...] = ()         # e.g. why the Hub was not used

    @property
    def trained(self) -> bool:
        return self.kind != "untrained"

    @property
    def label(self) -> str:
        """One line for users: which weights, and whether they are trained."""
        steps = f", {self.training_steps} training steps" if self.training_steps else ""
        if self.kind == "hub":
            return f"weights: Hugging Face Hub {self.repo_id}@{self.revision}{steps}"
        if self.kind == "bundled":
            return f"weights: bundled checkpoints/{self.directory.name}{steps}"
        return ("weights: UNTRAINED (random initialisation, no checkpoint found) - the output "
                "is a plain warp of the photo, nothing learned")


def _training_steps(directory: Path) -> int | None:
    info = directory / "training.json"
    if not info.is_file():
        return None
    try:
        step = json.loads(info.read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return int(step) if isinstance(step, (int, float)) else None


def _is_weights_dir(directory: Path) -> bool:
    return (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()


DEFAULT_NAME = "DEFAULT"


def bundled_candidates(root: Path = BUNDLED_DIR) -> list[Path]:
    """Weight folders under ``root``, best first: the one ``root/DEFAULT`` names, then most
    training steps, then newest."""
    if not root.is_dir():
        return []
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and _is_weights_dir(d)]
    marker = root / DEFAULT_NAME
    default = marker.read_text().strip() if marker.is_file() else ""
    return sorted(folders, key=lambda d: (d.name == default, _training_steps(d) or 0,
                                          (d / "model.safetensors").stat().st_mtime),
                  reverse=True)


def _file_digest(path: Path, algorithm: str, git_blob: bool = False) -> str:
    digest = hashlib.new(algorithm)
    if git_blob:  # git's blob id: sha1 of "blob <size>\0" + content
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_snapshot(local: Path, revision: str) -> list[str]:
    """Check a Hub cache snapshot against what the Hub published; returns the files checked.

    The snapshot folder is named after the commit it holds, which must be ``revision`` when
    that is a commit hash. Each file is a link to ``blobs/<etag>``; the Hub's etag is the
    SHA-256 of an LFS file (the weights) and the git blob id (SHA-1) of a small file, so both
    are recomputed from the bytes on disk. Raises ``WeightsIntegrityError`` on any mismatch.
    """
    if COMMIT_HASH.fullmatch(revision) and local.name != revision:
        raise WeightsIntegrityError(f"snapshot {local.name} is not the pinned revision")
    checked = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        etag = path.resolve().name
        if path.resolve().parent.name != "blobs":
            continue  # a plain copy (no blob link): nothing published to compare with
        if len(etag) == 64:
            actual = _file_digest(path, "sha256")
        elif len(etag) == 40:
            actual = _file_digest(path, "sha1", git_blob=True)
        else:
            continue
        if actual != etag:
            raise WeightsIntegrityError(f"{path.name} does not match its published hash")
        checked.append(path.name)
    return checked


def _from_hub(repo_id: str, revision: str, cache_dir: Path | None) -> tuple[Path, list[str]]:
    """The verified snapshot folder and notes (e.g. an unpinned revision, unchecked files)."""
    from huggingface_hub import snapshot_download

    local = Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=HUB_FILES,
                                   cache_dir=None if cache_dir is None else str(cache_dir)))
    if not _is_weights_dir(local):
        raise FileNotFoundError(f"{repo_id}@{revision} has no config.json + model.safetensors")
    checked = verify_snapshot(local, revision)
    notes = []
    if not COMMIT_HASH.fullmatch(revision):
        notes.append(f"revision {revision!r} is not pinned to a commit hash (resolved to "
                     f"{local.name}); set {ENV_REVISION} to a full 40-character commit")
    if "model.safetensors" not in checked:
        notes.append("model.safetensors could not be checked against the Hub's SHA-256")
    return local, notes


def resolve_weights(repo_id: str | None = None, revision: str | None = None,
                    bundled: Path = BUNDLED_DIR, checkpoint: str | None = None,
                    cache_dir: Path | None = None) -> WeightsSource:
    """Hub (if configured and reachable) -> bundled checkpoints -> untrained.

    Arguments left as None are read from the environment variables named in the module doc.
    """
    repo_id = repo_id if repo_id is not None else os.environ.get(ENV_REPO_ID, "").strip()
    revision = revision or os.environ.get(ENV_REVISION, "").strip() or "main"
    checkpoint = checkpoint if checkpoint is not None else os.environ.get(ENV_CHECKPOINT, "")
    notes: list[str] = []
    if repo_id:
        try:
            local, hub_notes = _from_hub(repo_id, revision, cache_dir)
            return WeightsSource("hub", local, repo_id, revision, _training_steps(local),
                                 notes=tuple(hub_notes))
        # Any failure (offline, missing repo, HTTP or network error) must leave the app usable
        # on the bundled weights; the note tells the user what happened.
        except Exception as error:  # noqa: BLE001
            reason = (str(error) if isinstance(error, WeightsIntegrityError)
                      else f"unavailable ({type(error).__name__})")
            notes.append(f"Hub weights {repo_id}@{revision} not used: {reason}")
    candidates = bundled_candidates(bundled)
    if checkpoint:
        chosen = [d for d in candidates if d.name == checkpoint]
        if not chosen:
            notes.append(f"bundled checkpoint {checkpoint!r} not found")
        candidates = chosen + [d for d in candidates if d.name != checkpoint]
    if candidates:
        best = candidates[0]
        return WeightsSource("bundled", best, training_steps=_training_steps(best),
                             notes=tuple(notes))
    return WeightsSource("untrained", None, notes=tuple(notes))


def pick_device() -> torch.device:
    """CUDA when a GPU is visible (e.g. inside ``@spaces.GPU``), otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(source: WeightsSource, device: torch.device | str = "cpu") -> TalkingHeadModel:
    """The TalkingHeadModel (E and G) of ``source``, in eval mode on ``device``."""
    if source.directory is None:
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
            torch.manual_seed(0)
            model = TalkingHeadModel(ModelConfig.preset(UNTRAINED_CONFIG))
    else:
        model = TalkingHeadModel.from_pretrained(source.directory)
    return model.to(device).eval()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's state dict (names, dtypes, shapes and bytes, in name order):
    the weights an avatar was made with, so that other weights of the same config are
    refused rather than rendering garbage. Independent of the device and of file layout."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel()
                      else b"")
    return digest.hexdigest()


def load_discriminator(source: WeightsSource, config: ModelConfig):
    """The shipped discriminator beside the weights (for FT), or None."""
    if source.directory is None:
        return None
    from talking_heads.training.checkpoint import load_discriminator as load

    return load(source.directory, config)
