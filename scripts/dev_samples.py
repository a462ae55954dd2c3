"""The model card's picture: dev identities (never trained on) driven by another dev clip.

    PYTHONPATH=. python scripts/dev_samples.py --checkpoint checkpoints/warp \
        --compare checkpoints/cpu --out checkpoints/warp/dev_samples.jpg [--steps 100] \
        [--videos DIR]

Top row: the driving clip's face crops at the chosen frames. Then one row per source clip and
checkpoint: its first frame (the only photo the model sees) | FF at each frame | FT at each
frame. ``--compare`` adds the rows of another checkpoint (labelled with its folder name;
tiles are resized to the first checkpoint's size).
Relative motion, crop only, like the app's "face crop" output. FF/FT seconds are printed.
With ``--videos DIR``, also DIR/<source>.mp4 per source: the whole driving clip (at most
``--seconds``) as driver crop | FF | FT side by side, with the driver's audio, to watch the
motion over time (flicker, jitter, identity drift) rather than four stills.
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
    parser.add_argument("--checkpoint", default=str(PROJECT / "checkpoints" / "warp"))
    parser.add_argument("--compare", help="another checkpoint whose rows are added below")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with manifest.csv")
    parser.add_argument("--sources", nargs="+",
                        default=["clips/dpe__s.mp4", "clips/styletalk__happyenglish_clip1.mp4"],
                        help="dev clips whose first frame is the photo")
    parser.add_argument("--driving", default="clips/liveportrait__d12.mp4")
    parser.add_argument("--frames", nargs="+", type=int, default=[0, 30, 60, 90])
    parser.add_argument("--steps", type=int, default=100, help="FT steps")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--videos", type=Path, help="also write side-by-side mp4s here")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the videos")
    return parser.parse_args(argv)


def _first_frame(path: Path) -> np.ndarray:
    return next(iter(video.iter_frames(path, max_frames=1)))


def _side_by_side(path: Path, driving_path: Path, driving, avatars: dict, detector,
                  seconds: float) -> None:
    """driver crop | FF | FT for every frame of the driving clip, with its audio."""
    size = next(iter(avatars.values())).config.image_size
    count = min(len(driving.points), int(round(seconds * driving.fps)))
    targets = {mode: driving_landmarks(avatar, driving, relative=True)[:count]
               for mode, avatar in avatars.items()}
    transform = None
    with video.Mp4Writer(path, driving.fps, audio=driving.audio) as writer:
        for index, image in enumerate(video.iter_frames(driving_path, max_frames=count)):
            found = detector.detect(image)
            if found.found:  # else keep the previous frame's crop
                transform = crop_transform(found.points, size)
            tiles = [transform.warp_image(image) if transform else
                     np.zeros((size, size, 3), np.uint8)]
            for mode, avatar in avatars.items():
                points = targets[mode][index][None]
                y = image_to_tensor(rasterize(points[0], size)[None])
                with torch.inference_mode():
                    tiles.append(tensor_to_image(avatar.render(y, points))[0])
            writer.write(np.concatenate(tiles, axis=1))


def _rows(checkpoint: str, args, driving, frames, detector, size: int) -> list[list]:
    """One row per source: photo | FF tiles | FT tiles, every tile ``size`` px."""
    model = TalkingHeadModel.from_pretrained(checkpoint).eval()
    disc = load_discriminator(checkpoint, model.config)
    own = model.config.image_size
    rows = []
    for source in args.sources:
        photo = _first_frame(args.data / source)
        row, avatars = None, {}
        for mode in ("ff", "ft"):
            torch.manual_seed(0)
            start = time.perf_counter()
            avatar = Avatar.from_images([photo], model, mode=mode, steps=args.steps,
                                        detector=detector, discriminator=disc)
            seconds = time.perf_counter() - start
            points = driving_landmarks(avatar, driving, relative=True)[frames]
            y = image_to_tensor(np.stack([rasterize(p, own) for p in points]))
            crops = [_fit(c, size) for c in tensor_to_image(avatar.render(y, points))]
            print(f"{Path(checkpoint).name} {source} {mode}: adapted in {seconds:.1f} s",
                  flush=True)
            if row is None:
                row = [_fit(avatar.sources.crops[0], size)]
            row += crops
            avatars[mode] = avatar
        rows.append(row)
        if args.videos and checkpoint == args.checkpoint:
            path = args.videos / f"{Path(source).stem}.mp4"
            _side_by_side(path, args.data / args.driving, driving, avatars, detector,
                          args.seconds)
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return rows


def _fit(tile: np.ndarray, size: int) -> np.ndarray:
    if tile.shape[0] == size:
        return tile
    return np.asarray(Image.fromarray(tile).resize((size, size), Image.BICUBIC))


def main(argv=None) -> int:
    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = TalkingHeadModel.from_pretrained(args.checkpoint).config.image_size
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
    labels = []
    for checkpoint in [args.checkpoint] + ([args.compare] if args.compare else []):
        new_rows = _rows(checkpoint, args, driving, frames, detector, size)
        labels += [Path(checkpoint).name] * len(new_rows)
        rows += new_rows
    grid = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    picture = Image.fromarray(grid)
    draw = ImageDraw.Draw(picture)
    n = len(frames)
    for text, column in (("driver", 1), ("FF", 1), (f"FT {args.steps}", 1 + n)):
        y0 = 2 if text == "driver" else size + 2
        draw.text((column * size + 3, y0), text, fill=(255, 255, 0))
    for row, label in enumerate(labels, start=1):
        draw.text((3, row * size + 2), f"source ({label})", fill=(255, 255, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
