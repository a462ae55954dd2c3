"""``python -m talking_heads animate``: photos (or a saved avatar file) + a driving clip or a
preset -> mp4, through the same ``Animator`` as the Space."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from talking_heads import presets
from talking_heads.animator import Animator
from talking_heads.driving import DEFAULT_MAX_SECONDS, driving_from_preset, driving_from_video
from talking_heads.faces import load_photo
from talking_heads.limits import Limits
from talking_heads.options import DRIVING_SHARE, AnimateOptions, progress_span


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m talking_heads animate",
        description="Animate a face in 1-8 photos with a driving clip or a preset motion.")
    person = parser.add_mutually_exclusive_group(required=True)
    person.add_argument("--source", nargs="+", type=Path, metavar="PHOTO",
                        help="photos of one person (the first is animated)")
    person.add_argument("--avatar", type=Path, help="an avatar file saved before "
                        "(--save-avatar, or downloaded from the Space): no adaptation")
    drive = parser.add_mutually_exclusive_group(required=True)
    drive.add_argument("--driving", type=Path, help="driving video (its audio is kept)")
    drive.add_argument("--preset", choices=presets.preset_names(), help="preset motion")
    parser.add_argument("--out", required=True, type=Path, help="output .mp4")
    parser.add_argument("--mode", choices=["ff", "ft"], default="ff",
                        help="ff: instant feed-forward; ft: fine-tune first")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps (ft)")
    parser.add_argument("--save-avatar", type=Path, metavar="FILE",
                        help="also save the adapted person as an avatar file")
    parser.add_argument("--absolute", action="store_true",
                        help="use the driving landmarks as they are (no relative motion)")
    parser.add_argument("--crop-only", action="store_true", help="output the face crop only")
    parser.add_argument("--side-by-side", action="store_true",
                        help="put the driving motion left of the result")
    parser.add_argument("--no-label", action="store_true", help="no visible SYNTHETIC label")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help="cut the driving motion to this length")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    options = AnimateOptions(mode=args.mode, steps=args.steps,
                             relative_motion=not args.absolute, paste_back=not args.crop_only,
                             label=not args.no_label,
                             layout="side_by_side" if args.side_by_side else "result")

    def show(fraction: float, message: str) -> None:
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr, flush=True)

    try:
        limits = Limits.from_environment()
        photos = [load_photo(path, limits) for path in args.source or []]
        animator = Animator.from_environment(args.device, limits)
        print(animator.weights_label, file=sys.stderr)
        start = 0.0 if args.preset else DRIVING_SHARE
        driving = (driving_from_preset(args.preset, args.max_seconds) if args.preset else
                   driving_from_video(args.driving, animator.detector, args.max_seconds,
                                      progress_span(show, 0.0, start), animator.limits))
        report = progress_span(show, start, 1.0)
        if args.avatar:
            avatar = animator.load_avatar(args.avatar)
            result = animator.drive(avatar, driving, args.out, options, report,
                                    notes=[f"avatar file {args.avatar.name} ({avatar.mode})"])
        else:
            split = 0.5 if options.mode == "ft" else 0.1
            animator.check_request(len(photos), options.mode, options.steps)
            adapted = animator.adapt(photos, options.mode, options.steps,
                                     progress_span(report, 0.0, split))
            if args.save_avatar:
                animator.save_avatar(adapted.avatar, args.save_avatar)
            result = animator.drive(adapted.avatar, driving, args.out, options,
                                    progress_span(report, split, 1.0), adapted=adapted)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    t = result.timings
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.path}: {result.frames} frames at {result.fps:g} fps; seconds: detect "
          f"{t.detect:.2f}, adapt {t.adapt:.2f}, render {t.render:.2f}, encode {t.encode:.2f}, "
          f"total {t.total:.2f}")
    return 0
