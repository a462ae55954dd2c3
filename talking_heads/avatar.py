"""An adapted person: what few-shot adaptation (paper section 3.3) produces, reusable from disk.

``Avatar.from_images(photos, model, mode="ff" | "ft")`` detects the largest face in each photo,
crops it (``landmarks.align``), rasterizes its landmarks into y, embeds
e_new = mean_t E(x(t), y(t)) and then either

- FF (feed-forward): psi-hat = P e_new with the meta-learned G; instant, or
- FT (fine-tuning): psi' and a private copy of G's weights trained on the photos
  (``training.finetune``).

``avatar.render(y)`` generates crops for driving landmark images. The source photos, their crop
transforms and their landmarks are kept for paste-back and relative motion. ``save`` /
``load`` (a folder) and ``save_file`` / ``load_file`` (one downloadable safetensors file,
``avatar_file``) use safetensors + JSON only, so an adapted person is reused without adapting
again. Every avatar records the digest of the weights it was made with
(``weights.weights_digest``); loading it with other weights is refused, since psi-hat = P e
of other E and P would render garbage.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from talking_heads.config import ModelConfig
from talking_heads.images import bgr_to_rgb, image_to_tensor, rgb_to_bgr, to_rgb_uint8
from talking_heads.landmarks.align import CropTransform, crop_transform
from talking_heads.landmarks.rasterize import rasterize
from talking_heads.models import Generator, ProjectionDiscriminator, Sources, TalkingHeadModel
from talking_heads.precision import inference_autocast
from talking_heads.weights import weights_digest as digest_of

Progress = Callable[[float, str], None]
AVATAR_CONFIG = "avatar.json"
AVATAR_WEIGHTS = "avatar.safetensors"
FORMAT_VERSION = 2  # 2: records the weights digest


class NoFaceError(ValueError):
    """A source photo has no detectable face."""


@dataclass
class SourceFaces:
    """The T source photos after detection and cropping.

    photos: originals, uint8 (H, W, 3) each; transforms: image -> crop; points: (T, 68, 2)
    float32 in image pixels; crop_points: (T, 68, 2) in crop pixels; crops: uint8
    (T, S, S, 3); landmark_images: uint8 (T, S, S, 3), the rasterized y."""

    photos: list[np.ndarray]
    transforms: list[CropTransform]
    points: np.ndarray
    crop_points: np.ndarray
    crops: np.ndarray
    landmark_images: np.ndarray

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x and y as float (T, 3, S, S) in [-1, 1]."""
        return image_to_tensor(self.crops), image_to_tensor(self.landmark_images)


def prepare_sources(images: list[np.ndarray], size: int, detector) -> SourceFaces:
    """Detect the largest face of each photo, crop it to ``size`` px and rasterize y."""
    if not images:
        raise ValueError("need at least one photo")
    photos, transforms, points = [], [], []
    for i, image in enumerate(images):
        photo = to_rgb_uint8(image)
        found = detector.detect(photo)
        if not found.found:
            raise NoFaceError(f"no face found in photo {i + 1} of {len(images)}")
        photos.append(photo)
        points.append(found.points)
        transforms.append(crop_transform(found.points, size))
    return _sources(photos, transforms, np.stack(points).astype(np.float32))


def _sources(photos, transforms, points) -> SourceFaces:
    size = transforms[0].size
    crop_points = np.stack([t.points_to_crop(p) for t, p in zip(transforms, points)])
    crops = np.stack([t.warp_image(p) for t, p in zip(transforms, photos)])
    ys = np.stack([rasterize(p, size) for p in crop_points])
    return SourceFaces(photos, transforms, points, crop_points.astype(np.float32), crops, ys)


def generator_for(model: TalkingHeadModel, mode: str, tensors: dict) -> Generator:
    """FF: the model's shared G; FT: a private copy loaded from the ``generator.*`` tensors."""
    if mode != "ft":
        return model.generator
    generator = copy.deepcopy(model.generator)
    prefix = "generator."
    generator.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                               if k.startswith(prefix)}, strict=True)
    return generator


class Avatar:
    """A person adapted to a model: render(y) -> x-hat. Build with ``from_images``."""

    def __init__(self, config: ModelConfig, mode: str, generator: Generator, psi: torch.Tensor,
                 embedding: torch.Tensor, sources: SourceFaces, info: dict | None = None,
                 weights_digest: str | None = None) -> None:
        self.config, self.mode = config, mode
        self.weights_digest = weights_digest  # of the model's weights it was made with
        self.generator = generator.eval()  # FF: the shared G; FT: this person's copy
        self.psi = psi.detach().reshape(1, -1)  # psi-hat (FF) or psi' (FT), (1, P)
        self.embedding = embedding.detach().reshape(1, -1)  # e_new, (1, N)
        self.sources = sources
        self.info = dict(info or {})
        self._source_tensors: tuple[torch.Tensor, ...] | None = None  # see source_tensors

    @classmethod
    def from_images(cls, images: list[np.ndarray], model: TalkingHeadModel, mode: str = "ff",
                    steps: int = 100, detector=None, progress: Progress | None = None,
                    early_stop=None, discriminator: ProjectionDiscriminator | None = None,
                    config=None, weights_digest: str | None = None) -> "Avatar":
        """Adapt ``model`` to the person in ``images`` (RGB uint8 photos).

        mode "ff": psi-hat = P e_new. mode "ft": ``steps`` fine-tuning updates (early_stop is a
        callable (step, losses) -> bool, e.g. ``training.finetune.PlateauStop()``); without a
        ``discriminator`` FT uses the content loss only. ``progress(fraction, message)``.
        ``weights_digest``: the model's ``weights.weights_digest`` when the caller has it
        (computed otherwise)."""
        if mode not in ("ff", "ft"):
            raise ValueError(f"mode must be 'ff' or 'ft', got {mode!r}")
        report = progress or (lambda fraction, message: None)
        if detector is None:
            from talking_heads.landmarks.detector import get_detector

            detector = get_detector("dlib")
        report(0.0, f"detecting faces in {len(images)} photo(s)")
        sources = prepare_sources(images, model.config.image_size, detector)
        digest = weights_digest or digest_of(model)
        device = next(model.parameters()).device
        x, y = (t.to(device) for t in sources.tensors())
        with torch.no_grad():
            was_training = model.training
            e_new = model.eval().embed(x[None], y[None])  # (1, N)
            model.train(was_training)
            if mode == "ff":
                report(1.0, "feed-forward avatar ready")
                return cls(model.config, "ff", model.generator, model.generator.project(e_new),
                           e_new, sources, {"photos": len(images)}, digest)
        from talking_heads.training.config import FinetuneConfig
        from talking_heads.training.finetune import run_finetune

        def ft_progress(fraction: float, message: str) -> None:
            report(0.05 + 0.95 * fraction, message)

        result = run_finetune(model, x, y, steps, discriminator=discriminator,
                              config=config or FinetuneConfig.for_model(model.config),
                              progress=ft_progress, early_stop=early_stop,
                              points=torch.from_numpy(sources.crop_points))
        info = {"photos": len(images), "steps": result.steps,
                "stopped_early": result.stopped_early, "content_only": result.content_only,
                "final_content_loss": result.losses[-1].content if result.losses else None,
                "selected_step": result.selected_step}  # held-out choice (warp, T >= 2)
        report(1.0, f"fine-tuned avatar ready after {result.steps} steps")
        return cls(model.config, "ft", result.generator.generator, result.generator.psi,
                   e_new, sources, info, digest)

    @torch.no_grad()
    def render(self, landmark_images: torch.Tensor,
               points: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """y (B, 3, S, S) in [-1, 1] -> x-hat (B, 3, S, S) in [-1, 1].

        ``points`` (B, 68, 2): the target landmarks in crop pixels, which the warp design needs
        (its closed-form warp maps them onto the nearest source photo's)."""
        size = self.config.image_size
        if landmark_images.dim() != 4 or landmark_images.shape[1:] != (3, size, size):
            raise ValueError(f"expected (B, 3, {size}, {size}), got {tuple(landmark_images.shape)}")
        device = self.psi.device
        y = landmark_images.to(device)
        sources = None
        if self.generator.needs_sources:
            if points is None:
                raise ValueError("this model warps the photos: render needs the target points")
            points = torch.as_tensor(np.asarray(points, np.float32), device=device)
            sources = Sources.shared(*self.source_tensors(), batch=y.shape[0])
        with inference_autocast(device):  # bf16 networks where native (``precision``)
            out = self.generator(y, self.psi.expand(y.shape[0], -1), points, sources)
        return out.float()

    def source_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The T source crops and landmark images (T, 3, S, S) and points (T, 68, 2) on the
        model's device, converted once."""
        if self._source_tensors is None:
            x, y = self.sources.tensors()
            points = torch.from_numpy(self.sources.crop_points)
            self._source_tensors = tuple(t.to(self.psi.device) for t in (x, y, points))
        return self._source_tensors

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """avatar.json + avatar.safetensors (+ the source photos as PNG)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"psi": self.psi.cpu().contiguous(), "embedding": self.embedding.cpu(),
                   "points": torch.from_numpy(self.sources.points)}
        if self.mode == "ft":
            tensors.update({f"generator.{k}": v.detach().cpu().contiguous()
                            for k, v in self.generator.state_dict().items()})
        save_file(tensors, str(directory / AVATAR_WEIGHTS), metadata={"format": "pt"})
        for i, photo in enumerate(self.sources.photos):
            if not cv2.imwrite(str(directory / f"photo_{i:02d}.png"), rgb_to_bgr(photo)):
                raise OSError(f"could not write photo {i} into {directory}")
        config = {"format_version": FORMAT_VERSION, "mode": self.mode,
                  "model": self.config.to_dict(), "weights_digest": self.weights_digest,
                  "info": self.info,
                  "photos": [f"photo_{i:02d}.png" for i in range(len(self.sources.photos))],
                  "transforms": [{"matrix": t.matrix.tolist(), "size": t.size}
                                 for t in self.sources.transforms]}
        (directory / AVATAR_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    def save_file(self, path: str | Path) -> Path:
        """One safetensors file with the JSON in its header metadata (``avatar_file``)."""
        from talking_heads import avatar_file

        return avatar_file.write(self, path)

    @classmethod
    def load_file(cls, path: str | Path, model: TalkingHeadModel,
                  weights_digest: str | None = None, max_bytes: int = 64 << 20) -> "Avatar":
        """Read and validate a file written by ``save_file``; ``AvatarFileError`` (a
        ValueError) names the problem: not safetensors, too large, wrong tensors, another
        model config or other weights."""
        from talking_heads import avatar_file

        return avatar_file.read(path, model, weights_digest or digest_of(model), max_bytes)

    @classmethod
    def load(cls, directory: str | Path, model: TalkingHeadModel,
             weights_digest: str | None = None) -> "Avatar":
        """Read an Avatar saved by ``save`` for the same model config and the same weights
        (no unpickling)."""
        directory = Path(directory)
        config = json.loads((directory / AVATAR_CONFIG).read_text())
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported avatar format_version {config.get('format_version')!r}")
        if ModelConfig.from_dict(config["model"]) != model.config:
            raise ValueError("this avatar was made for a different model config")
        digest = weights_digest or digest_of(model)
        if config.get("weights_digest") != digest:
            raise ValueError("this avatar was made with other weights of this model config "
                             "(weights digest differs): adapt the photos again")
        tensors = load_file(str(directory / AVATAR_WEIGHTS))
        device = next(model.parameters()).device
        generator = generator_for(model, config["mode"], tensors)
        photos = []
        for name in config["photos"]:
            image = cv2.imread(str(directory / Path(name).name), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"missing avatar photo {name} in {directory}")
            photos.append(bgr_to_rgb(image))
        transforms = [CropTransform(np.array(t["matrix"], dtype=np.float64), int(t["size"]))
                      for t in config["transforms"]]
        sources = _sources(photos, transforms, tensors["points"].numpy())
        return cls(model.config, config["mode"], generator, tensors["psi"].to(device),
                   tensors["embedding"].to(device), sources, config.get("info"), digest)
