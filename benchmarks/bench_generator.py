"""Generator G speed and memory per model config (run by hand, not a test).

    python -m benchmarks.bench_generator                     # every config x batch, own process
    python -m benchmarks.bench_generator --config cpu --batch 8 [--threads 1] [--out FILE.json]

For one (config, batch) this measures G(y, psi-hat) under ``torch.inference_mode`` on random
inputs (speed does not depend on weight values): median and best milliseconds per generated frame
over ``--repeats`` timed calls after two warm-up calls, GFLOPs per frame (torch's FLOP counter,
multiply-add = 2 FLOPs), parameter counts of E, G and V, and the process's peak resident memory
(``ru_maxrss``; each combination runs in a fresh process so the peak is its own). The load
average is recorded because the development machine is shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.harness import PROJECT_ROOT, load_average, peak_rss_mib, write_result

CONFIGS = ("cpu", "paper")
BATCHES = (1, 8)


def _millions(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 3)


def measure(config: str, batch: int, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from talking_heads.config import ModelConfig
    from talking_heads.models import Embedder, Generator, ProjectionDiscriminator

    torch.manual_seed(0)
    cfg = ModelConfig.preset(config)
    generator = Generator(cfg).eval()
    params = {"E": _millions(Embedder(cfg)), "G": _millions(generator),
              "V": _millions(ProjectionDiscriminator(cfg, 1).trunk)}
    size = cfg.image_size
    y = torch.rand(batch, 3, size, size) * 2 - 1  # (B, 3, S, S) landmark images
    psi = torch.randn(batch, generator.psi_dim) * 0.1  # (B, P)
    rss_before = peak_rss_mib()
    # FlopCounterMode under inference_mode trips torch's parametrizations (spectral norm).
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        generator(y[:1], psi[:1])
    with torch.inference_mode():
        for _ in range(2):
            generator(y, psi)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            generator(y, psi)
            times.append((time.perf_counter() - start) / batch)
    return {"config": config, "batch": batch, "image_size": size, "threads": torch.get_num_threads(),
            "params_m": params, "psi_dim": generator.psi_dim,
            "gflops_per_frame": round(counter.get_total_flops() / 1e9, 3),
            "ms_per_frame_median": round(1e3 * statistics.median(times), 2),
            "ms_per_frame_best": round(1e3 * min(times), 2),
            "fps_median": round(1.0 / statistics.median(times), 1),
            "peak_rss_mib_before_inference": round(rss_before, 1), "repeats": repeats}


def run_all(threads: int, repeats: int, out: Path | None) -> None:
    rows = []
    for config in CONFIGS:
        for batch in BATCHES:
            cmd = [sys.executable, "-m", "benchmarks.bench_generator", "--config", config,
                   "--batch", str(batch), "--threads", str(threads), "--repeats", str(repeats),
                   "--json-only"]
            done = subprocess.run(cmd, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout))
    print("| config | px | batch | GFLOPs/frame | ms/frame median (best) | fps | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['image_size']} | {r['batch']} | {r['gflops_per_frame']} | "
              f"{r['ms_per_frame_median']} ({r['ms_per_frame_best']}) | {r['fps_median']} | "
              f"{r['peak_rss_mib']} |")
    print("params (M):", {r["config"]: r["params_m"] for r in rows if r["batch"] == 1})
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=CONFIGS, help="one config (default: all, each in "
                        "its own process)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.config is None:
        run_all(args.threads, args.repeats, args.out)
        return
    result = {**measure(args.config, args.batch, args.repeats), "load_average_start": load_average()}
    if args.json_only:
        print(json.dumps({**result, "peak_rss_mib": round(peak_rss_mib(), 1),
                          "load_average_end": load_average()}))
    else:
        write_result(args.out, result)


if __name__ == "__main__":
    main()
