"""Run every benchmark for each model config, each in a fresh process, and tabulate (by hand).

    python -m benchmarks.bench_all [--configs cpu paper] [--out benchmarks/results.json]

Each (benchmark, config) runs as ``python -m benchmarks.bench_<name>`` in its own process so
that its peak resident memory (ru_maxrss) is its own. Prints the markdown table that
benchmarks/README.md carries. The paper model's FT is timed over ``--paper-ft-steps`` steps and
extrapolated to 100 (marked in the table).
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


def table(results: dict) -> str:
    lines = ["| config | fps b1 | fps best (batch) | fps + detection b1 / best | FT 100 steps "
             "T=1 / T=8 (s) | 10 s clip FF (s) | peak RSS render / FT / e2e (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for config, r in results.items():
        render, ft, e2e = r.get("render", {}), r.get("finetune", {}), r.get("end_to_end", {})
        if "error" in render or "error" in ft or "error" in e2e:
            lines.append(f"| {config} | error: see JSON | | | | | |")
            continue
        mark = " (extrapolated from {} steps)".format(ft["measured_steps"]) \
            if ft.get("extrapolated") else ""
        lines.append(
            f"| {config} | {render['fps_batch1']} | {render['fps_best_batch']} "
            f"({render['best_batch']}) | {render['fps_with_detection_batch1']} / "
            f"{render['fps_with_detection_best_batch']} | {ft['seconds_for_steps']['T1']} / "
            f"{ft['seconds_for_steps']['T8']}{mark} | {e2e['seconds_total']} | "
            f"{render['peak_rss_mib']:.0f} / {ft['peak_rss_mib']:.0f} / {e2e['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--checkpoint", default=None, help="trained weights for the cpu config")
    parser.add_argument("--paper-ft-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results.json")
    args = parser.parse_args(argv)
    load_start = load_average()
    results = {}
    for config in args.configs:
        common = ["--config", config, "--threads", str(args.threads)]
        if args.checkpoint and config == "cpu":
            common += ["--checkpoint", args.checkpoint]
        ft_extra = ["--measure-steps", str(args.paper_ft_steps)] if config == "paper" else []
        results[config] = {"render": run("bench_render", common),
                           "finetune": run("bench_finetune", common + ft_extra),
                           "end_to_end": run("bench_end_to_end", common)}
    report = {"machine": machine_info(), "load_average_start": load_start,
              "load_average_end": load_average(), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"load average start {load_start}, end {report['load_average_end']}; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
