"""The model card's picture: dev identities (never trained on) driven by another dev clip.

    PYTHONPATH=. python scripts/dev_samples.py --checkpoint checkpoints/cpu \
        --out checkpoints/cpu/dev_samples.png [--steps 100]

Top row: the driving clip's face crops at the chosen frames. Then one row per source clip:
its first frame (the only photo the model sees) | FF at each frame | FT at each frame.
Relative motion, crop only, like the app's "face crop" output. FF/FT seconds are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from talking_heads import video  # noqa: E402
from talking_heads.avatar import Avatar  # noqa: E402
from talking_heads.driving import driving_from_video, driving_landmarks  # noqa: E402
from talking_heads.images import image_to_tensor, tensor_to_image  # noqa: E402
from talking_heads.landmarks.align import crop_transform  # noqa: E402
from talking_heads.landmarks.detector import get_detector  # noqa: E402
from talking_heads.landmarks.rasterize import rasterize  # noqa: E402
from talking_heads.training.checkpoint import load_discriminator  # noqa: E402
from talking_heads.models import TalkingHeadModel  # noqa: E402

DATA = PROJECT.parent / "shared" / "data"


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(PROJECT / "checkpoints" / "cpu"))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with manifest.csv")
    parser.add_argument("--sources", nargs="+",
                        default=["clips/dpe__s.mp4", "clips/styletalk__happyenglish_clip1.mp4"],
                        help="dev clips whose first frame is the photo")
    parser.add_argument("--driving", default="clips/liveportrait__d12.mp4")
    parser.add_argument("--frames", nargs="+", type=int, default=[0, 30, 60, 90])
    parser.add_argument("--steps", type=int, default=100, help="FT steps")
    parser.add_argument("--threads", type=int, default=0)
    return parser.parse_args(argv)


def _first_frame(path: Path) -> np.ndarray:
    return next(iter(video.iter_frames(path, max_frames=1)))


def main(argv=None) -> int:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TalkingHeadModel.from_pretrained(args.checkpoint).eval()
    disc = load_discriminator(args.checkpoint, model.config)
    size = model.config.image_size
    detector = get_detector("dlib")
    driving = driving_from_video(args.data / args.driving, detector, max_seconds=60.0)
    frames = [f for f in args.frames if f < len(driving.points)]
    # the driver's own crops, for reference
    driver_frames, _ = video.read_video(args.data / args.driving, max_frames=max(frames) + 1)
    top = []
    for index in frames:
        image = driver_frames[index]
        found = detector.detect(image)
        transform = crop_transform(found.points, size)
        top.append(transform.warp_image(image))
    rows = [[np.zeros((size, size, 3), np.uint8)] + top + top]
    for source in args.sources:
        photo = _first_frame(args.data / source)
        row = None
        for mode in ("ff", "ft"):
            start = time.perf_counter()
            avatar = Avatar.from_images([photo], model, mode=mode, steps=args.steps,
                                        detector=detector, discriminator=disc)
            seconds = time.perf_counter() - start
            points = driving_landmarks(avatar, driving, relative=True)[frames]
            y = image_to_tensor(np.stack([rasterize(p, size) for p in points]))
            crops = tensor_to_image(avatar.render(y))
            print(f"{source} {mode}: adapted in {seconds:.1f} s", flush=True)
            if row is None:
                row = [avatar.sources.crops[0]]
            row += list(crops)
        rows.append(row)
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    picture = Image.fromarray(grid)
    draw = ImageDraw.Draw(picture)
    n = len(frames)
    for text, column in (("driver", 1), ("FF", 1), (f"FT {args.steps}", 1 + n)):
        y0 = 2 if text == "driver" else size + 2
        draw.text((column * size + 3, y0), text, fill=(255, 255, 0))
    draw.text((3, size + 2), "source", fill=(255, 255, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
