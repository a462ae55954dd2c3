"""Run every benchmark for each model config, each in a fresh process, and tabulate (by hand).

    python -m benchmarks.bench_all [--configs cpu paper] [--threads 1] \
        [--out benchmarks/results/bench_all.json]

Each (benchmark, config) runs as ``python -m benchmarks.bench_<name>`` in its own process so
that its peak resident memory (ru_maxrss) is its own. Prints the markdown table that
benchmarks/README.md carries. The paper model's FT is timed over ``--paper-ft-steps`` steps and
extrapolated to 100, as is the cpu model's at T = 8 (marked "from N" in the table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import PROJECT_ROOT, load_average, machine_info


def run(module: str, args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", f"benchmarks.{module}", *args, "--out", str(out)]
        print("running:", " ".join(command[1:]), file=sys.stderr, flush=True)
        completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        if completed.returncode != 0:
            return {"error": completed.stderr.strip().splitlines()[-1:]}
        return json.loads(out.read_text())


def _ft_cell(ft: dict, t: int) -> str:
    r = ft.get(f"T{t}", {})
    if not r or "error" in r:
        return "error"
    seconds = r["seconds_for_steps"][f"T{t}"]
    return f"{seconds} (from {r['measured_steps']})" if r["extrapolated"] else f"{seconds}"


def table(results: dict) -> str:
    lines = ["| config | px | fps b1 | fps best (batch) | fps + detection b1 / best | "
             "FT 100 steps T=1 / T=8 (s) | 10 s clip FF (s) | peak RSS render / FT / e2e (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for config, r in results.items():
        render, ft, e2e = r["render"], r["finetune"], r["end_to_end"]
        if "error" in render or "error" in e2e:
            lines.append(f"| {config} | error: see JSON | | | | | | |")
            continue
        ft_rss = max((v.get("peak_rss_mib", 0) for v in ft.values()), default=0)
        lines.append(
            f"| {config} | {render['image_size']} | {render['fps_batch1']} | "
            f"{render['fps_best_batch']} ({render['best_batch']}) | "
            f"{render['fps_with_detection_batch1']} / {render['fps_with_detection_best_batch']} | "
            f"{_ft_cell(ft, 1)} / {_ft_cell(ft, 8)} | {e2e['seconds_total']} | "
            f"{render['peak_rss_mib']:.0f} / {ft_rss:.0f} / {e2e['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--checkpoint", default=None, help="trained weights for the cpu config")
    parser.add_argument("--paper-ft-steps", type=int, default=3)
    parser.add_argument("--cpu-ft8-steps", type=int, default=20,
                        help="FT steps timed for the cpu config at T=8 (extrapolated to 100)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path,
                        default=PROJECT_ROOT / "benchmarks" / "results" / "bench_all.json")
    args = parser.parse_args(argv)
    load_start = load_average()
    results = {}
    for config in args.configs:
        common = ["--config", config, "--threads", str(args.threads)]
        if args.checkpoint and config == "cpu":
            common += ["--checkpoint", args.checkpoint]
        # Full 100 steps where it takes minutes; otherwise a few steps, extrapolated (marked).
        measure = {1: args.paper_ft_steps if config == "paper" else 100,
                   8: args.paper_ft_steps if config == "paper" else args.cpu_ft8_steps}
        render_extra = ["--frames", "16", "--batches", "1", "2", "4"] if config == "paper" else []
        results[config] = {
            "render": run("bench_render", common + render_extra),
            "finetune": {f"T{t}": run("bench_finetune", common + [
                "--shots", str(t), "--measure-steps", str(steps)]) for t, steps in measure.items()},
            "end_to_end": run("bench_end_to_end", common)}
    report = {"machine": machine_info(), "load_average_start": load_start,
              "load_average_end": load_average(), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"load average start {load_start}, end {report['load_average_end']}; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
