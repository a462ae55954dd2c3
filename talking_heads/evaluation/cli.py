"""``python -m talking_heads evaluate``: self-reenactment metrics and baselines on a manifest.

Example (the dev split of the shared data, FF and FT at T = 1, 8, 32)::

    python -m talking_heads evaluate --manifest ../shared/data/manifest.csv --split dev \
        --shots 1 8 32 --frames 32 --mode ff ft --out metrics.json --dump dumps/ \
        --checkpoint checkpoints/cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "talking_heads" / "eval_landmarks"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m talking_heads evaluate",
        description="Self-reenactment (paper Sec. 5.1): T few-shot frames from each clip's "
                    "first half, evaluated frames from its second half driven by their own "
                    "landmarks; the model (FF/FT) next to the copy and warp baselines.")
    parser.add_argument("--manifest", required=True, type=Path,
                        help="CSV with columns file, identity, split (paths relative to it)")
    parser.add_argument("--split", default="dev", help="manifest split to use; 'all' for every row")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 8, 32], help="T values")
    parser.add_argument("--frames", type=int, default=32, help="evaluated frames per clip")
    parser.add_argument("--mode", nargs="+", choices=["ff", "ft"], default=["ff", "ft"])
    parser.add_argument("--out", type=Path, default=Path("metrics.json"), help="JSON report")
    parser.add_argument("--dump", type=Path, default=None, help="write PNGs for every frame here")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="model folder or Hugging Face repo id (default: the "
                                            "app's weights, see talking_heads.weights)")
    model.add_argument("--random-init", metavar="CONFIG",
                       help="untrained model of this ModelConfig preset (checks the machinery)")
    parser.add_argument("--ft-steps", type=int, default=100, help="fine-tuning steps for FT")
    parser.add_argument("--ft-batch", type=int, default=None,
                        help="frames per FT step (default: FinetuneConfig's, as the app uses)")
    parser.add_argument("--detector", default="dlib", help="landmark backend (as in training)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N clips (with --limit: clips N+1 to N+LIMIT), "
                             "to split a long evaluation into runs")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="landmark cache (default: $XDG_CACHE_HOME/talking_heads/...)")
    parser.add_argument("--no-vgg", action="store_true", help="skip the VGG perceptual distance")
    parser.add_argument("--vgg-size", type=int, default=None,
                        help="resize to this side for the VGG distance (default: model's)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is faster on a busy CPU)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _load_model(args: argparse.Namespace):
    from talking_heads.config import ModelConfig
    from talking_heads.models import TalkingHeadModel

    if args.random_init:
        import torch

        torch.manual_seed(args.seed)
        return TalkingHeadModel(ModelConfig.preset(args.random_init)).eval(), None
    from talking_heads.training.checkpoint import load_discriminator

    if args.checkpoint is None:
        from talking_heads.weights import resolve_weights

        source = resolve_weights()
        if source.directory is None:
            raise SystemExit("no trained weights found (checkpoints/ is empty and no Hub repo is "
                             "configured); pass --checkpoint, or --random-init cpu to check "
                             "the machinery with untrained weights")
        args.checkpoint = str(source.directory)
        # the report names the weights as the app does, not by this machine's path
        args.model_label = source.label.removeprefix("weights: ")
    model = TalkingHeadModel.from_pretrained(args.checkpoint)
    discriminator = load_discriminator(args.checkpoint, model.config) if "ft" in args.mode \
        else None
    return model, discriminator


def _feature_net(args: argparse.Namespace, device: str):
    if args.no_vgg:
        return None
    from talking_heads.evaluation.perceptual import load_vgg_features

    return load_vgg_features(size=args.vgg_size, device=device)


def _finite(value):
    """NaN (a metric with no frames to average, e.g. LMK when no face is ever found) -> null,
    so that the report is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _protocol(args: argparse.Namespace, model, discriminator, ft_config, scorer,
              device: str) -> dict:
    import torch

    return {"manifest": str(args.manifest), "split": args.split, "skip": args.skip,
            "limit": args.limit, "shots": args.shots,
            "frames": args.frames, "modes": args.mode, "ft_steps": args.ft_steps,
            "ft_config": ft_config.to_dict(), "detector": args.detector,
            "model": getattr(args, "model_label", None) or args.checkpoint
            or f"random-init:{args.random_init}",
            "model_config": model.config.to_dict(),
            "ft_discriminator": discriminator is not None, "device": device,
            "vgg": scorer.feature_net.name if scorer.feature_net else None,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch "
                       f"{torch.__version__}, {torch.get_num_threads()} threads"}


def _write_report(path: Path, protocol: dict, results: list, settings, seconds: float,
                  complete: bool) -> dict:
    """The JSON report; rewritten after every clip so that a stopped run keeps its clips."""
    from talking_heads.evaluation.report import aggregate, clip_entry

    report = {"protocol": protocol, "complete": complete,
              "aggregate": aggregate(results, settings.shots, settings.modes),
              "clips": [clip_entry(r) for r in results], "seconds": round(seconds, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    temp.replace(path)
    return report


def main(argv: list[str] | None = None) -> int:
    import torch
    from tqdm import tqdm

    from talking_heads.evaluation.protocol import read_manifest
    from talking_heads.evaluation.reenact import ModelReenactor
    from talking_heads.evaluation.report import format_table
    from talking_heads.evaluation.run import EvalSettings, evaluate_clip
    from talking_heads.evaluation.scoring import Scorer
    from talking_heads.landmarks.detector import get_detector
    from talking_heads.training.config import FinetuneConfig

    args = _parse(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    clips = read_manifest(args.manifest, args.split)[args.skip:]
    clips = clips[: args.limit]
    if not clips:
        print(f"no clips of split {args.split!r} in {args.manifest}", file=sys.stderr)
        return 2
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, discriminator = _load_model(args)
    app_config = FinetuneConfig.for_model(model.config)  # what the app runs for this design
    ft_config = app_config if args.ft_batch is None else \
        dataclasses.replace(app_config, batch_size=args.ft_batch)
    reenactor = ModelReenactor(model, discriminator, ft_steps=args.ft_steps, ft_config=ft_config,
                               device=device)
    scorer = Scorer(get_detector(args.detector), feature_net=_feature_net(args, device))
    settings = EvalSettings(shots=tuple(args.shots), modes=tuple(args.mode), frames=args.frames,
                            dump_dir=args.dump, cache_dir=args.cache_dir or _default_cache())
    protocol = _protocol(args, model, discriminator, ft_config, scorer, device)
    results = []
    with tqdm(clips, desc="evaluate", unit="clip") as bar:
        for clip in bar:
            results.append(evaluate_clip(clip, reenactor, scorer, settings,
                                         on_step=lambda message: bar.set_postfix_str(message)))
            _write_report(args.out, protocol, results, settings,
                          time.perf_counter() - started, complete=False)
    report = _write_report(args.out, protocol, results, settings,
                           time.perf_counter() - started, complete=True)
    print(format_table(report["aggregate"]))
    skipped = [r.clip.name for r in results if r.skipped]
    if skipped:
        print(f"skipped clips (no usable frames): {', '.join(skipped)}")
    for t in settings.shots:  # T larger than a clip's first half: that row has fewer clips
        short = [f"{r.clip.name} ({r.skipped_shots[t]})" for r in results
                 if t in r.skipped_shots]
        if short:
            print(f"T={t} not evaluated on {len(short)} clip(s) with too few few-shot frames: "
                  f"{', '.join(short)}")
    print(f"{len(results)} clips in {report['seconds']} s; report: {args.out}")
    return 0
