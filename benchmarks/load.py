"""Issue 8, load: N simultaneous ``/animate`` requests against the real app in its own process.

Run by hand (never in CI). Each run starts the app (``app.build_demo`` + ``app.serve``, the
bundled trained weights, ``Limits.from_environment()``: by default 1 request rendered at a
time and 16 waiting) on localhost, samples its resident memory every 0.2 s, fires N requests
at once from N ``gradio_client`` sessions (one photo, preset "talking" cut to a few seconds by
the app), and records per request the outcome (done, or the exact refusal), the latency and the
frames of the video; then the server's idle and peak memory (VmRSS, VmHWM), whether it is
still up, and whether it serves one more request.

    python benchmarks/load.py                        # the three runs of docs/ROBUSTNESS.md
    python benchmarks/load.py --run default          # 8 x FF, default limits
    python benchmarks/load.py --run queue2           # 8 x FF, TALKING_HEADS_QUEUE_SIZE=2
    python benchmarks/load.py --run ft               # 4 x FT (20 steps), default limits
    python benchmarks/load.py --run default --requests 12 --queue-size 4 --seconds 3
    python benchmarks/load.py --soak 40              # and 40 requests one after another

Writes ``benchmarks/results/load.json`` (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.bad_inputs import AppServer, machine_facts  # noqa: E402

EXAMPLE = str(PROJECT_ROOT / "examples" / "astronaut.jpg")
RESULTS = PROJECT_ROOT / "benchmarks" / "results"
RUNS = {  # name: (requests, mode, steps, environment overrides)
    "default": (8, "ff", 10, {}),
    "queue2": (8, "ff", 10, {"TALKING_HEADS_QUEUE_SIZE": "2"}),
    "ft": (4, "ft", 20, {}),
}


def _frames(path) -> int:
    from talking_heads import video

    return video.probe(path).num_frames


def load_run(name: str, requests: int, mode: str, steps: int, env: dict[str, str],
             seconds: float, timeout_s: float = 1200.0) -> dict:
    """One server, ``requests`` simultaneous /animate calls, one more afterwards."""
    from gradio_client import Client, handle_file

    facts = machine_facts()
    server = AppServer(env=env, max_seconds=seconds)
    try:
        idle = server.rss_mib()
        print(f"[{name}] server up in {server.startup_s:.0f} s ({server.weights}); idle RSS "
              f"{idle} MiB; {server.limits}", flush=True)
        clients = [Client(server.url, verbose=False) for _ in range(requests)]
        barrier = threading.Barrier(requests)
        args = ("preset", "talking", None, mode, steps, True, "photo", True)
        server.start_sampling(0.2)

        def one(index: int) -> dict:
            barrier.wait()  # all at once
            start = time.perf_counter()
            try:
                job = clients[index].submit([handle_file(EXAMPLE)], *args, api_name="/animate")
                path, notes = job.result(timeout=timeout_s)
                path = path["video"] if isinstance(path, dict) else path
                return {"request": index, "outcome": "done",
                        "latency_s": round(time.perf_counter() - start, 2),
                        "frames": _frames(path),
                        "timing_line": notes.splitlines()[-1] if notes else ""}
            except Exception as error:  # noqa: BLE001 - what the caller sees is the point
                return {"request": index, "outcome": "refused",
                        "message": f"{type(error).__name__}: {error}",
                        "latency_s": round(time.perf_counter() - start, 2), "frames": 0}

        wall = time.perf_counter()
        with ThreadPoolExecutor(requests) as pool:
            outcomes = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - wall
        samples = server.stop_sampling()
        peak = server.peak_mib()
        alive = server.alive()
        after = None
        if alive:
            start = time.perf_counter()
            try:
                path, _ = Client(server.url, verbose=False).predict(
                    [handle_file(EXAMPLE)], *args, api_name="/animate")
                path = path["video"] if isinstance(path, dict) else path
                after = {"outcome": "done", "latency_s": round(time.perf_counter() - start, 2),
                         "frames": _frames(path)}
            except Exception as error:  # noqa: BLE001
                after = {"outcome": "refused", "message": f"{type(error).__name__}: {error}",
                         "latency_s": round(time.perf_counter() - start, 2)}
        for client in clients:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
        done = [o for o in outcomes if o["outcome"] == "done"]
        result = {
            "run": name, "requests": requests, "mode": mode, "steps": steps if mode == "ft"
            else None, "driving_seconds": seconds, "env": env, "limits": server.limits,
            "weights": server.weights, "started": facts, "finished": machine_facts(),
            "server_startup_s": round(server.startup_s, 1),
            "idle_rss_mib": idle, "peak_rss_mib": peak,
            "max_sampled_rss_mib": max((rss for _, rss in samples), default=None),
            "rss_after_mib": server.rss_mib(), "wall_s": round(wall, 2),
            "done": len(done), "refused": len(outcomes) - len(done),
            "refusal_messages": sorted({o["message"] for o in outcomes
                                        if o["outcome"] != "done"}),
            "latencies_done_s": sorted(o["latency_s"] for o in done),
            "server_alive_after": alive, "one_more_request": after,
            "outcomes": outcomes,
            "rss_samples_mib": [[t, rss] for t, rss in samples],  # [seconds, MiB] every 0.2 s
        }
        print(f"[{name}] {len(done)} done, {result['refused']} refused in {wall:.0f} s; "
              f"latencies {result['latencies_done_s']}; refusals {result['refusal_messages']}; "
              f"RSS idle {idle} peak {peak} MiB; alive {alive}; one more: {after}", flush=True)
        if not alive:
            result["server_stderr_tail"] = server.stderr_tail()
        return result
    finally:
        server.stop()


def soak_run(requests: int, seconds: float) -> dict:
    """``requests`` FF requests one after another (each from a new session): does the
    server's resident memory settle or keep growing?"""
    from gradio_client import Client, handle_file

    facts = machine_facts()
    server = AppServer(max_seconds=seconds)
    try:
        idle = server.rss_mib()
        after, latencies = [], []
        for index in range(requests):
            client = Client(server.url, verbose=False)
            start = time.perf_counter()
            client.predict([handle_file(EXAMPLE)], "preset", "talking", None, "ff", 10, True,
                           "photo", True, api_name="/animate")
            latencies.append(round(time.perf_counter() - start, 2))
            client.close()
            time.sleep(0.3)
            after.append(server.rss_mib())
        result = {"run": "soak", "requests": requests, "mode": "ff", "sequential": True,
                  "driving_seconds": seconds, "limits": server.limits, "weights": server.weights,
                  "started": facts, "finished": machine_facts(), "idle_rss_mib": idle,
                  "peak_rss_mib": server.peak_mib(), "rss_after_each_mib": after,
                  "latencies_s": latencies, "server_alive_after": server.alive()}
        print(f"[soak] RSS idle {idle}, after each request {after}; peak "
              f"{result['peak_rss_mib']} MiB", flush=True)
        return result
    finally:
        server.stop()


def markdown_table(runs: list[dict]) -> str:
    rows = ["| run | requests (mode) | limits | done / refused | refusal message | latency of "
            "done requests (s) min / median / max | frames each | idle / peak RSS (MiB) | up "
            "after, one more request |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if r["run"] == "soak":
            continue
        lat = r["latencies_done_s"]
        median = lat[len(lat) // 2] if lat else None
        frames = sorted({o["frames"] for o in r["outcomes"] if o["outcome"] == "done"})
        queue = r["env"].get("TALKING_HEADS_QUEUE_SIZE", "16")
        concurrency = r["env"].get("TALKING_HEADS_CONCURRENCY", "1")
        more = r["one_more_request"] or {}
        mode = r["mode"] + (f", {r['steps']} steps" if r["steps"] else "")
        refusal = "; ".join(m.replace("|", "/") for m in r["refusal_messages"]) or "-"
        rows.append(
            f"| {r['run']} | {r['requests']} ({mode}, {r['driving_seconds']:g} s driving) | "
            f"concurrency {concurrency}, queue {queue} | {r['done']} / {r['refused']} | "
            f"{refusal} | "
            + (f"{lat[0]:.1f} / {median:.1f} / {lat[-1]:.1f}" if lat else "-")
            + f" | {', '.join(map(str, frames)) or '-'} | {r['idle_rss_mib']:.0f} / "
            f"{r['peak_rss_mib']:.0f} | {'yes' if r['server_alive_after'] else 'NO'}, "
            f"{more.get('outcome', '-')} ({more.get('latency_s', '-')} s, "
            f"{more.get('frames', '-')} frames) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", choices=sorted(RUNS), action="append",
                        help="which run(s); default: all three")
    parser.add_argument("--requests", type=int, help="simultaneous requests (overrides)")
    parser.add_argument("--queue-size", type=int, help="TALKING_HEADS_QUEUE_SIZE (overrides)")
    parser.add_argument("--concurrency", type=int, help="TALKING_HEADS_CONCURRENCY (overrides)")
    parser.add_argument("--steps", type=int, help="fine-tuning steps of the ft run")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="the app cuts the preset motion to this (build_demo max_seconds)")
    parser.add_argument("--soak", type=int, default=0, metavar="N",
                        help="also N sequential requests on a fresh server (RSS after each)")
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    runs = []
    for name in args.run or list(RUNS):
        requests, mode, steps, env = RUNS[name]
        env = dict(env)
        if args.queue_size is not None:
            env["TALKING_HEADS_QUEUE_SIZE"] = str(args.queue_size)
        if args.concurrency is not None:
            env["TALKING_HEADS_CONCURRENCY"] = str(args.concurrency)
        runs.append(load_run(name, args.requests or requests, mode, args.steps or steps, env,
                             args.seconds))
    if args.soak:
        runs.append(soak_run(args.soak, args.seconds))
    result = {"what": "issue 8: simultaneous /animate requests against the running Space",
              "machine": machine_facts(), "torch_threads_server": 1, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(runs))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
