"""Issue 15, fuzzed decoders: photos and driving clips must get ``InputError`` or work.

Run by hand (never in CI; ``tests/test_fuzz.py`` is the seconds-long version). Each target is
fuzzed with atheris (libFuzzer, coverage-guided over Pillow's Python plugins and
``talking_heads``), starting from the seed corpus in ``tests/fuzz_corpus/<target>/``:

- ``photo``: the bytes as an uploaded photo -> ``inputs.read_photo`` (Pillow, bounded decode).
- ``clip``: the bytes as an uploaded driving clip -> ``driving.driving_from_video`` with a
  stand-in detector that always finds the same face, so every frame is decoded, timed,
  resampled and its audio read (``inputs.check_clip``, ``video.iter_timed_frames``,
  ``video.read_audio``), as the app does, minus dlib.

Any result or ``InputError`` is fine; any other exception is a finding (its type, message and
innermost frame are counted, the input is saved) and fuzzing goes on. libFuzzer itself stops
the run on a hang (``--timeout`` per input) or a memory blow-up (``--rss-limit-mb``), which
are findings too.

    pip install atheris
    python benchmarks/fuzz.py --target photo --minutes 10
    python benchmarks/fuzz.py --target clip --minutes 10
    python benchmarks/fuzz.py --make-corpus      # rebuild tests/fuzz_corpus from real data

Writes ``benchmarks/results/fuzz_<target>.json`` (inputs tried, seconds, findings, exit
status) and saves finding inputs in ``benchmarks/results/fuzz_findings/<target>/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
CORPUS = PROJECT_ROOT / "tests" / "fuzz_corpus"
RESULTS = PROJECT_ROOT / "benchmarks" / "results"
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
TARGETS = ("photo", "clip", "avatar")
SUFFIX = {"photo": ".img", "clip": ".mp4", "avatar": ".avatar.safetensors"}
MAX_LEN = {"photo": 64 << 10, "clip": 64 << 10, "avatar": 256 << 10}  # bytes per input


def fuzz_limits():
    """The server's limits, with the driving cut short so that one input stays cheap."""
    from talking_heads.limits import Limits

    return Limits(max_driving_seconds=2.0, max_driving_frames=60)


class FixedFaceDetector:
    """Stands in for dlib: the same 68 points in the middle of every frame."""

    name = "fixed"

    def __init__(self) -> None:
        import numpy as np

        angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
        self._unit = np.stack([0.5 + 0.3 * np.cos(angles),
                               0.5 + 0.35 * np.sin(angles)], axis=1).astype(np.float32)

    def detect(self, image):
        from talking_heads.landmarks.detector import Detection

        height, width = image.shape[:2]
        points = (self._unit * [width, height]).astype("float32")  # (68, 2) pixels
        box = (0.2 * width, 0.15 * height, 0.8 * width, 0.85 * height)
        return Detection(points, box, 1)


def run_photo(path: Path, limits) -> None:
    """One fuzz input as a photo: ``LoadedPhoto`` (checked) or ``InputError``."""
    from talking_heads.inputs import read_photo

    photo = read_photo(path, index=1, limits=limits, name="upload.jpg", cache=False)
    image = photo.image
    assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3, image.shape
    assert max(image.shape[:2]) <= limits.photo_decode_side, image.shape


def run_clip(path: Path, limits, detector=None) -> None:
    """One fuzz input as a driving clip: ``Driving`` (checked) or ``InputError``."""
    from talking_heads.driving import driving_from_video

    driving = driving_from_video(path, detector or FixedFaceDetector(), limits=limits)
    assert driving.points.ndim == 3 and driving.points.shape[1:] == (68, 2)
    assert 1 <= len(driving.points) <= limits.max_driving_frames
    assert driving.fps > 0


_AVATAR_MODEL = []
AVATAR_MODEL = CORPUS / "avatar_model"  # config.json + model.safetensors, committed


def avatar_model():
    """The tiny model the seed avatars were made with, and its weights digest.

    It is committed beside the seeds rather than re-made from a seed: an avatar file names
    its weights by digest, and a seeded initialisation is not bit-identical across CPUs (an
    AMD host and an Intel one gave different weights from ``torch.manual_seed(0)``)."""
    if not _AVATAR_MODEL:
        from talking_heads.avatar import digest_of
        from talking_heads.models import TalkingHeadModel

        model = TalkingHeadModel.from_pretrained(AVATAR_MODEL).eval()
        _AVATAR_MODEL.append((model, digest_of(model)))
    return _AVATAR_MODEL[0]


def run_avatar(path: Path, limits) -> None:
    """One fuzz input as an uploaded avatar file: an ``Avatar`` (checked) or the avatar's
    named ``AvatarFileError``."""
    from talking_heads.avatar import Avatar

    model, digest = avatar_model()
    avatar = Avatar.load_file(path, model, weights_digest=digest, max_bytes=1 << 20)
    assert avatar.psi.ndim == 2 and len(avatar.sources.photos) >= 1


RUNNERS = {"photo": run_photo, "clip": run_clip, "avatar": run_avatar}


def expected_errors() -> tuple[type[Exception], ...]:
    """The clear, user-facing refusals: ``InputError`` (and the avatar's own error)."""
    from talking_heads.avatar_file import AvatarFileError
    from talking_heads.inputs import InputError

    return InputError, AvatarFileError


def run_bytes(target: str, data: bytes, folder: Path, limits) -> None:
    """Write ``data`` to a file in ``folder`` and run ``target`` on it (the app gets files)."""
    path = folder / f"upload{SUFFIX[target]}"
    path.write_bytes(data)
    try:
        RUNNERS[target](path, limits)
    finally:
        path.unlink(missing_ok=True)


def finding_key(error: BaseException) -> str:
    """Exception type and innermost frame: one key per distinct bug, not per input."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(error).__name__} at {where}"


def fuzz_child(target: str, out: Path, findings_dir: Path) -> None:
    """The libFuzzer process (``atheris.Fuzz`` never returns; libFuzzer exits it)."""
    import atheris

    with atheris.instrument_imports(include=["PIL", "talking_heads.inputs",
                                             "talking_heads.video", "talking_heads.driving",
                                             "talking_heads.avatar_file"]):
        import PIL.Image  # noqa: F401
        from talking_heads import avatar_file, driving, inputs, video  # noqa: F401
    refusals = expected_errors()

    limits = fuzz_limits()
    folder = Path(tempfile.mkdtemp(prefix=f"talking-heads-fuzz-{target}-"))
    findings_dir.mkdir(parents=True, exist_ok=True)
    stats = {"target": target, "inputs": 0, "input_errors": 0, "accepted": 0, "findings": {},
             "started": time.time()}
    last_write = [0.0]

    def write_stats(force: bool = False) -> None:
        now = time.time()
        if force or now - last_write[0] > 5.0:
            stats["seconds"] = round(now - stats["started"], 1)
            out.write_text(json.dumps(stats, indent=1) + "\n")
            last_write[0] = now

    def one(data: bytes) -> None:
        stats["inputs"] += 1
        try:
            run_bytes(target, data, folder, limits)
            stats["accepted"] += 1
        except refusals as error:
            stats["input_errors"] += 1
            message = str(error)
            refusals_seen = stats.setdefault("refusal_messages", {})
            if message in refusals_seen or len(refusals_seen) < 50:  # a sample of them
                refusals_seen[message] = refusals_seen.get(message, 0) + 1
        except Exception as error:  # noqa: BLE001 - anything else is what we are looking for
            key = finding_key(error)
            entry = stats["findings"].setdefault(key, {"count": 0, "message": str(error)[:300]})
            entry["count"] += 1
            if entry["count"] == 1:
                name = hashlib.sha1(data).hexdigest()[:16] + SUFFIX[target]
                (findings_dir / name).write_bytes(data)
                entry["input"] = name
                write_stats(force=True)
        write_stats()

    atheris.Setup(sys.argv[:1] + sys.argv[sys.argv.index("--") + 1:], one)
    atheris.Fuzz()


def fuzz(target: str, minutes: float, timeout_s: int, rss_limit_mb: int,
         max_len: int | None = None) -> dict:
    """Run the libFuzzer child for ``minutes``; collect its stats and exit status."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"fuzz_{target}.json"
    findings_dir = RESULTS / "fuzz_findings" / target
    work = Path(tempfile.mkdtemp(prefix=f"talking-heads-fuzz-corpus-{target}-"))
    seeds = CORPUS / target
    command = [sys.executable, str(Path(__file__).resolve()), "--child", target,
               "--out", str(out), "--findings", str(findings_dir), "--",
               str(work), str(seeds), f"-max_total_time={int(minutes * 60)}",
               f"-timeout={timeout_s}", f"-rss_limit_mb={rss_limit_mb}",
               f"-max_len={max_len}", "-print_final_stats=1"]
    max_len = max_len or MAX_LEN[target]
    start = time.time()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    stats = json.loads(out.read_text()) if out.is_file() else {}
    lines = log.stderr.splitlines()
    stats.update({
        "target": target, "minutes_asked": minutes, "wall_s": round(time.time() - start, 1),
        "libfuzzer_exit": log.returncode,
        # libFuzzer exits 0 at max_total_time; otherwise it stopped on a hang/OOM/crash.
        "libfuzzer_stopped_on": None if log.returncode == 0 else
        next((line for line in lines if "ERROR: libFuzzer" in line or "==ERROR" in line),
             lines[-1] if lines else "?"),
        "libfuzzer_final_stats": [line for line in lines if line.startswith("stat::")],
        "seed_corpus_files": len(list(seeds.iterdir())),
        "corpus_grown_to": len(list(work.iterdir())),
        "timeout_per_input_s": timeout_s, "rss_limit_mb": rss_limit_mb, "max_len": max_len,
        "log_tail": "\n".join(lines[-15:]),
    })
    out.write_text(json.dumps(stats, indent=1) + "\n")
    return stats


# --------------------------------------------------------------------------- seed corpus

def make_corpus(data: Path) -> None:
    """Small valid, odd and truncated photos and clips derived from the real data."""
    import av
    import numpy as np
    from PIL import Image

    from talking_heads import video

    photos, clips = CORPUS / "photo", CORPUS / "clip"
    photos.mkdir(parents=True, exist_ok=True)
    clips.mkdir(parents=True, exist_ok=True)
    source = sorted((data / "photos" / "johns" / "John_Simm").glob("*.jpg"))[0]
    face = Image.open(source).convert("RGB").resize((40, 40))
    face.save(photos / "face.jpg", quality=80)
    face.save(photos / "face_progressive.jpg", quality=70, progressive=True)
    face.save(photos / "face.png")
    face.convert("RGBA").save(photos / "face_rgba.png")
    face.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(photos / "face_palette.png")
    Image.fromarray((np.asarray(face.convert("L")).astype(np.uint16) * 257)).save(
        photos / "face_gray16.png")
    face.convert("CMYK").save(photos / "face_cmyk.jpg", quality=70)
    face.save(photos / "face.webp", quality=60)
    face.save(photos / "face.bmp")
    face.save(photos / "face.tiff")
    face.save(photos / "face.gif", save_all=True, append_images=[face.transpose(0)],
              duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6
    face.save(photos / "face_exif_rotated.jpg", exif=exif, quality=70)
    whole = (photos / "face.jpg").read_bytes()
    (photos / "face_truncated.jpg").write_bytes(whole[:len(whole) // 2])
    png = (photos / "face.png").read_bytes()
    (photos / "face_truncated.png").write_bytes(png[:len(png) * 2 // 3])

    clip = data / "clips" / "sadtalker__WDA_KatieHill_000.mp4"
    frames = [f for _, f in zip(range(6), video.iter_frames(clip, max_side=48))]
    audio = video.read_audio(clip, max_seconds=0.3)
    video.write_mp4(clips / "face_audio.mp4", frames, 25, audio=audio)
    video.write_mp4(clips / "face_silent.mp4", frames, 25)
    whole = (clips / "face_audio.mp4").read_bytes()
    (clips / "face_truncated.mp4").write_bytes(whole[:len(whole) // 2])
    with av.open(str(clips / "face_vfr.mkv"), "w") as container:  # per-frame timestamps
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = __import__("fractions").Fraction(
            1, 1000)
        for frame, pts in zip(frames, [0, 40, 80, 400, 800, 1200]):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:48, :48]),
                                                 format="rgb24")
            picture.pts = pts
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    make_avatar_seeds(source)
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(PROJECT_ROOT)} {path.stat().st_size} B")


def make_avatar_seeds(photo_path: Path) -> None:
    """An FF avatar file of the seeded tiny model (a real photo, 150 px), and a cut copy."""
    import numpy as np
    from PIL import Image

    from talking_heads.avatar import Avatar
    from talking_heads.landmarks.detector import get_detector

    folder = CORPUS / "avatar"
    folder.mkdir(parents=True, exist_ok=True)
    if not AVATAR_MODEL.exists():  # a new tiny model; the seeds below are made with it
        import torch

        from talking_heads.config import ModelConfig
        from talking_heads.models import TalkingHeadModel

        torch.manual_seed(0)
        TalkingHeadModel(ModelConfig.tiny()).save_pretrained(AVATAR_MODEL)
    model, _ = avatar_model()  # as loaded: the digest the seeds carry
    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    avatar = Avatar.from_images([photo], model, mode="ff", detector=get_detector("dlib"))
    path = avatar.save_file(folder / "ff.avatar.safetensors")
    whole = path.read_bytes()
    (folder / "ff_truncated.avatar.safetensors").write_bytes(whole[:len(whole) // 2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=TARGETS, action="append")
    parser.add_argument("--minutes", type=float, default=10.0, help="per target")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per input: a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=2048, help="a memory blow-up")
    parser.add_argument("--max-len", type=int, help="bytes per input (default per target)")
    parser.add_argument("--make-corpus", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--findings", type=Path, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.child:
        fuzz_child(args.child, args.out, args.findings)
        return 0
    if args.make_corpus:
        make_corpus(args.data)
        return 0
    for target in args.target or TARGETS:
        stats = fuzz(target, args.minutes, args.timeout, args.rss_limit_mb, args.max_len)
        print(json.dumps({k: v for k, v in stats.items() if k != "log_tail"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
