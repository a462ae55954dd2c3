"""Build the preset driving motions in ``talking_heads/presets/`` (run by hand, seconds).

    python scripts/make_presets.py [--data ../shared/data] [--out talking_heads/presets]

Clip presets come from TRAIN-split clips of the shared data (never ``dev``), through the
project's own landmark detector and face crop (the same ones training and driving use):
detect per frame -> fill frames without a face -> per-frame crop, temporally smoothed ->
points in crop pixels -> light temporal smoothing -> crop-normalised float16 track.

Head-motion presets (nodding, turning) are synthesised from a neutral frame of a real track:
the 68 points get a rough depth profile (nose forward, jaw contour back), are rotated about a
pivot behind the face and projected orthographically; blinks are added so the face is alive.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from talking_heads import video  # noqa: E402
from talking_heads.landmarks import retarget  # noqa: E402
from talking_heads.landmarks.align import crop_transform, smooth_transforms  # noqa: E402
from talking_heads.landmarks.detector import get_detector  # noqa: E402
from talking_heads.presets import Preset, normalise_points, save_preset  # noqa: E402

CROP = 256          # crop side used while building (tracks are size-independent)
SECONDS = 10.0      # target length of every preset


@dataclass(frozen=True)
class ClipPreset:
    name: str
    clip: str           # file under the data folder (must be split=train)
    start: int          # first frame
    description: str
    ping_pong: bool = False   # short clips: play forward, backward, ... up to SECONDS


CLIP_PRESETS = (
    ClipPreset("talking", "clips/styletalk__Obama_clip1.mp4", 0,
               "a man talking, small natural head motion"),
    ClipPreset("talking_animated", "clips/styletalk__andrew_clip_1.mp4", 0,
               "a man talking with livelier head motion"),
    ClipPreset("smiling", "clips/eamm__happy.mp4", 0,
               "talking with a broad smile", ping_pong=True),
    ClipPreset("expressions", "clips/liveportrait__d6.mp4", 0,
               "exaggerated expressions: wide eyes, pouting, winking"),
)


def _train_files(data: Path) -> set[str]:
    with open(data / "manifest.csv", newline="") as handle:
        return {row["file"] for row in csv.DictReader(handle) if row["split"] == "train"}


def clip_track(path: Path, start: int, frames: int, detector) -> tuple[np.ndarray, float, int]:
    """Crop-normalised landmark track (T, 68, 2) of a clip, its fps and frames without a face."""
    fps = video.video_fps(path)
    points, found = [], []
    for index, frame in enumerate(video.iter_frames(path, max_frames=start + frames)):
        if index < start:
            continue
        detection = detector.detect(frame)
        found.append(detection.found)
        points.append(detection.points if detection.found else np.zeros((68, 2), np.float32))
    track = retarget.fill_missing(np.stack(points), np.array(found))  # (T, 68, 2) image px
    transforms = smooth_transforms([crop_transform(p, CROP) for p in track])
    in_crop = np.stack([t.points_to_crop(p) for t, p in zip(transforms, track)])
    in_crop = retarget.smooth_track(in_crop, sigma=0.75)
    return normalise_points(in_crop, CROP), fps, int(len(found) - sum(found))


def ping_pong(track: np.ndarray, length: int) -> np.ndarray:
    """Forward, backward, forward... until ``length`` frames (no jump at the turns)."""
    cycle = np.concatenate([track, track[-2:0:-1]])  # (2T - 2, 68, 2)
    repeats = int(np.ceil(length / len(cycle)))
    return np.concatenate([cycle] * repeats)[:length]


# Rough depth of the 68 iBUG points in units of half the face width (positive = towards the
# camera). Only the ordering matters for a believable rotation: nose tip in front, eyes and
# lips a little behind it, the jaw contour curving back towards the ears.
def _depth_profile() -> np.ndarray:
    z = np.zeros(68, np.float32)
    jaw = np.arange(17)
    z[:17] = 0.1 - 0.9 * (np.abs(jaw - 8) / 8.0) ** 1.5
    z[17:27] = [0.05, 0.2, 0.28, 0.3, 0.3, 0.3, 0.3, 0.28, 0.2, 0.05]   # brows
    z[27:31] = [0.3, 0.42, 0.56, 0.72]                                  # nose bridge to tip
    z[31:36] = [0.42, 0.5, 0.56, 0.5, 0.42]                             # nose base
    z[36:48] = [0.05, 0.16, 0.18, 0.2, 0.18, 0.16,                      # eyes
                0.2, 0.18, 0.16, 0.05, 0.16, 0.18]
    z[48:60] = [0.28, 0.38, 0.44, 0.46, 0.44, 0.38, 0.28, 0.36, 0.42, 0.44, 0.42, 0.36]
    z[60:68] = [0.3, 0.4, 0.42, 0.4, 0.3, 0.4, 0.42, 0.4]
    return z


def rotate_face(neutral: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Rotate a (68, 2) face by per-frame yaw/pitch (radians) -> (T, 68, 2), orthographic.

    The pivot sits behind and below the face (roughly the neck), as for a real head.
    """
    centre = neutral.mean(axis=0)
    half_width = np.linalg.norm(neutral[16] - neutral[0]) / 2.0
    xyz = np.concatenate([(neutral - centre) / half_width, _depth_profile()[:, None]], axis=1)
    pivot = np.array([0.0, 0.6, -1.0], np.float32)  # (x, y, z): below and behind the face
    p = xyz - pivot  # (68, 3)
    frames = []
    for a, b in zip(yaw, pitch):
        ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
        q = p @ (rx @ ry).T + pivot  # (68, 3)
        frames.append(q[:, :2] * half_width + centre)
    return np.stack(frames).astype(np.float32)  # (T, 68, 2)


def add_blinks(track: np.ndarray, fps: float, period: float = 3.2) -> np.ndarray:
    """Close the eyelids for ~0.2 s every ``period`` seconds (upper lid onto the lower lid)."""
    out = track.copy()
    upper_lower = [(37, 41), (38, 40), (43, 47), (44, 46)]
    length = max(3, int(round(0.2 * fps)))
    shape = np.sin(np.linspace(0, np.pi, length)) * 0.9  # fraction of closure
    for start in np.arange(period * 0.6, len(track) / fps, period):
        first = int(start * fps)
        for k, amount in enumerate(shape):
            t = first + k
            if t >= len(out):
                break
            for up, low in upper_lower:
                out[t, up] += amount * (out[t, low] - out[t, up])
    return out


def synthetic_presets(neutral: np.ndarray, fps: float) -> list[Preset]:
    """Nodding and turning from one neutral crop-normalised (68, 2) face."""
    frames = int(SECONDS * fps)
    t = np.arange(frames) / fps
    envelope = np.clip(t / 0.8, 0, 1) * np.clip((SECONDS - t) / 0.8, 0, 1)  # ease in and out
    nod_pitch = np.radians(12.0) * np.sin(2 * np.pi * 0.7 * t) * envelope
    turn_yaw = np.radians(28.0) * np.sin(2 * np.pi * 0.2 * t) * envelope
    small = np.radians(3.0) * np.sin(2 * np.pi * 0.33 * t + 1.0) * envelope
    source = "synthesised: 3-D-ish rotation of a neutral frame of the 'talking' preset"
    return [
        Preset("nodding", "nodding yes, about 0.7 nods per second", source, fps,
               add_blinks(rotate_face(neutral, small, nod_pitch), fps)),
        Preset("turning", "turning the head left and right", source, fps,
               add_blinks(rotate_face(neutral, turn_yaw, small), fps)),
    ]


def neutral_frame(track: np.ndarray) -> int:
    """A frame with a typical shape and a closed mouth: among the third of frames nearest the
    mean normalised shape, the one with the smallest inner-lip gap (points 62 and 66)."""
    shapes = retarget.normalise_shape(track)  # (T, 68, 2)
    distance = np.abs(shapes - shapes.mean(axis=0)).sum(axis=(1, 2))
    typical = np.argsort(distance)[: max(1, len(track) // 3)]
    gap = np.linalg.norm(track[typical, 62] - track[typical, 66], axis=-1)
    return int(typical[np.argmin(gap)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "talking_heads" / "presets")
    args = parser.parse_args(argv)
    train = _train_files(args.data)
    detector = get_detector("dlib")
    talking = None
    for spec in CLIP_PRESETS:
        if spec.clip not in train:
            raise SystemExit(f"{spec.clip} is not a train-split clip; presets use train only")
        path = args.data / spec.clip
        fps = video.video_fps(path)
        wanted = int(round(SECONDS * fps))
        track, fps, missing = clip_track(path, spec.start, wanted, detector)
        source = (f"{spec.clip} (train split), frames {spec.start}-{spec.start + len(track) - 1}"
                  f", dlib landmarks in the project's smoothed face crop")
        if spec.ping_pong and len(track) < wanted:
            track = ping_pong(track, wanted)
            source += ", played forwards and backwards"
        preset = Preset(spec.name, spec.description, source, fps, track)
        out = save_preset(preset, args.out)
        print(f"{spec.name}: {preset.num_frames} frames at {fps:g} fps, {missing} without a "
              f"face, {out.stat().st_size / 1024:.1f} KiB")
        if spec.name == "talking":
            talking = preset
    neutral = talking.points[neutral_frame(talking.points)]
    for preset in synthetic_presets(neutral, fps=25.0):
        out = save_preset(preset, args.out)
        print(f"{preset.name}: {preset.num_frames} frames, {out.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
