"""Issue 15, memory per request: the server's peak RSS for each kind of request.

Run by hand (never in CI). For each kind a fresh server (the real app, ``app.build_demo`` +
``app.serve``, the bundled default weights, ``Limits.from_environment()``, driving cut only by
the limits: 20 s) is started in its own process, and the request is sent through
``gradio_client`` as an API user would, twice: the first on the fresh server (lazy loads
included), the second after ``5 > /proc/<pid>/clear_refs`` reset the peak. Recorded per call:
VmRSS before, VmHWM after (the peak), the highest 0.2 s sample, the latency and what came back.

Kinds: FF and FT at T = 1 and T = 8 (8 photos of one person, ``photos/johns/John_Simm``,
upscaled to 720 px, the largest side the pipeline keeps), FT with ``--ft-steps`` (10) steps
(memory is reached in the first step; the limits allow 300), the preset ``talking`` (10 s);
a 20 s uploaded clip (``mimictalk__German_20s.mp4``, 512x512, 25 fps, AAC); ``/detect`` on
the 8 photos; an 8000x8000 PNG sent to ``/detect`` and then to ``/animate``; and the live
stream's per-frame work (``measure_live``: a private event, so in a process of its own).

    python benchmarks/memory.py                       # every kind, ~20-40 min on 2 cores
    python benchmarks/memory.py --only ff_T1 ft_T8

Writes ``benchmarks/results/memory.json`` (``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.bad_inputs import AppServer, machine_facts  # noqa: E402

DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
RESULTS = PROJECT_ROOT / "benchmarks" / "results"
CLIP_20S = "clips/mimictalk__German_20s.mp4"  # 512x512, 25 fps, 500 frames, AAC
BUDGET_MIB = 2048


def make_inputs(data: Path, folder: Path) -> dict[str, object]:
    """The photos (1 and 8 of John Simm at 720 px), the 20 s clip and a large PNG."""
    import cv2
    import numpy as np
    from PIL import Image

    johns = sorted((data / "photos" / "johns" / "John_Simm").glob("*.jpg"))[:8]
    photos = []
    for index, path in enumerate(johns):
        image = np.asarray(Image.open(path).convert("RGB"))
        big = cv2.resize(image, (720, 720), interpolation=cv2.INTER_CUBIC)
        out = folder / f"simm_{index}.jpg"
        Image.fromarray(big).save(out, quality=92)
        photos.append(str(out))
    png = folder / "simm_8000.png"
    Image.fromarray(cv2.resize(np.asarray(Image.open(johns[0]).convert("RGB")), (8000, 8000),
                               interpolation=cv2.INTER_LINEAR)).save(png, compress_level=1)
    return {"photos": photos, "clip": str(data / CLIP_20S), "png": str(png)}


def kinds(inputs: dict, ft_steps: int) -> dict[str, dict]:
    one, eight = inputs["photos"][:1], inputs["photos"]
    return {
        "ff_T1": {"what": "FF, 1 photo, preset talking (10 s)", "photos": one, "mode": "ff"},
        "ff_T8": {"what": "FF, 8 photos, preset talking (10 s)", "photos": eight, "mode": "ff"},
        "ft_T1": {"what": f"FT {ft_steps} steps, 1 photo, preset talking", "photos": one,
                  "mode": "ft"},
        "ft_T8": {"what": f"FT {ft_steps} steps, 8 photos, preset talking", "photos": eight,
                  "mode": "ft"},
        "clip_20s": {"what": "FF, 1 photo, uploaded 20 s clip (512x512, 25 fps, audio)",
                     "photos": one, "mode": "ff", "video": inputs["clip"]},
        "detect_T8": {"what": "/detect, 8 photos", "photos": eight, "endpoint": "/detect"},
        "png_8000": {"what": "8000x8000 PNG: /detect then /animate (FF, talking)",
                     "photos": [inputs["png"]], "mode": "ff", "detect_first": True},
    }


def _call(client, kind: dict, ft_steps: int, timeout_s: float):
    from gradio_client import handle_file

    files = [handle_file(path) for path in kind["photos"]]
    if kind.get("endpoint") == "/detect":
        gallery = client.submit(files, api_name="/detect").result(timeout=timeout_s)
        return f"{len(gallery)} previews"
    video = kind.get("video")
    path, notes = client.submit(
        files, "video" if video else "preset", "talking",
        handle_file(video) if video else None, kind["mode"], ft_steps, True, "photo", True,
        api_name="/animate").result(timeout=timeout_s)
    path = path["video"] if isinstance(path, dict) else path
    from talking_heads import video as video_io

    return f"{video_io.probe(path).num_frames} frames; " + " / ".join(
        line.lstrip("- ") for line in notes.splitlines()[-2:])


def measure(name: str, kind: dict, ft_steps: int, repeat: int, timeout_s: float) -> dict:
    from gradio_client import Client

    server = AppServer(max_seconds=20.0)  # the limits cut driving, not the benchmark
    calls = []
    try:
        idle = server.rss_mib()
        print(f"[{name}] server up in {server.startup_s:.0f} s, idle {idle} MiB", flush=True)
        for attempt in range(repeat):
            client = Client(server.url, verbose=False)
            before = server.rss_mib()
            reset = server.reset_peak()
            server.start_sampling(0.2)
            start = time.perf_counter()
            try:
                if kind.get("detect_first"):
                    _call(client, {**kind, "endpoint": "/detect"}, ft_steps, timeout_s)
                outcome = _call(client, kind, ft_steps, timeout_s)
            except Exception as error:  # noqa: BLE001 - what the caller saw is the result
                outcome = f"error: {type(error).__name__}: {error}"
            latency = time.perf_counter() - start
            samples = server.stop_sampling()
            peak = server.peak_mib()
            client.close()
            calls.append({"call": attempt + 1, "rss_before_mib": before, "peak_reset": reset,
                          "peak_rss_mib": peak,
                          "max_sampled_rss_mib": max((r for _, r in samples), default=None),
                          "rise_mib": None if peak is None or before is None
                          else round(peak - before, 1),
                          "latency_s": round(latency, 1), "outcome": outcome})
            print(f"[{name}] call {attempt + 1}: before {before}, peak {peak} MiB, "
                  f"{latency:.0f} s: {outcome}", flush=True)
        return {"kind": name, **{k: v for k, v in kind.items() if k not in ("photos", "video")},
                "photos": len(kind["photos"]), "video": CLIP_20S if kind.get("video") else None, "idle_rss_mib": idle,
                "server_startup_s": round(server.startup_s, 1), "weights": server.weights,
                "limits": server.limits, "calls": calls,
                "peak_rss_mib": max(c["peak_rss_mib"] or 0 for c in calls),
                "server_alive_after": server.alive()}
    finally:
        server.stop()


def measure_live(frames: int) -> dict:
    """The Live tab's stream is a private event (no API name, not reachable through
    ``gradio_client``): its per-frame work, ``LiveDriver.step`` on ``frames`` webcam-sized
    frames of a real clip, is measured in a process of its own by ``benchmarks/live.py``
    (model, weights and detector as the app loads them; no Gradio)."""
    import subprocess

    out = Path(tempfile.mkdtemp(prefix="talking-heads-live-")) / "live.json"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / "live.py"),
                          "--frames", str(frames), "--out", str(out)], capture_output=True,
                         text=True, cwd=PROJECT_ROOT,
                         env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    result = json.loads(out.read_text()) if out.is_file() else {}
    shutil.rmtree(out.parent, ignore_errors=True)
    peak = result.get("peak_rss_mib")
    print(f"[live] {frames} frames: process peak {peak} MiB", flush=True)
    return {"kind": "live", "what": f"live stream: {frames} webcam frames through LiveDriver "
            "(in its own process, no Gradio)", "photos": 1, "idle_rss_mib": None,
            "calls": [{"call": 1, "rss_before_mib": None, "peak_rss_mib": peak,
                       "latency_s": round(time.perf_counter() - start, 1),
                       "outcome": f"{result.get('frames')} frames at {result.get('fps')} fps"
                       if peak else f"error: {run.stderr[-500:]}"}],
            "peak_rss_mib": peak or 0, "live_result": result}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| request | idle (MiB) | 1st call: before / peak (MiB) | 2nd call: before / peak "
             "(MiB) | highest peak (MiB) | under 2 GiB | s (1st) | outcome |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["calls"]
        if r["kind"] == "live":
            lines.append(f"| {r['what']} | - | - | - | {r['peak_rss_mib']:.0f} | "
                         f"{'yes' if r['peak_rss_mib'] < BUDGET_MIB else 'NO'} | "
                         f"{c[0]['latency_s']:.0f} | {c[0]['outcome'][:120]} |")
            continue
        second = f"{c[1]['rss_before_mib']:.0f} / {c[1]['peak_rss_mib']:.0f}" \
            if len(c) > 1 else "-"
        lines.append(f"| {r['what']} | {r['idle_rss_mib']:.0f} | {c[0]['rss_before_mib']:.0f}"
                     f" / {c[0]['peak_rss_mib']:.0f} | {second} | {r['peak_rss_mib']:.0f} | "
                     f"{'yes' if r['peak_rss_mib'] < BUDGET_MIB else 'NO'} | "
                     f"{c[0]['latency_s']:.0f} | {c[0]['outcome'].replace('|', '/')[:120]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="these kinds only")
    parser.add_argument("--ft-steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="calls per fresh server")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per call")
    parser.add_argument("--live-frames", type=int, default=300)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = Path(tempfile.mkdtemp(prefix="talking-heads-memory-"))
    rows = []
    # Kinds measured by an earlier run (``--only``) are kept, and replaced when measured again.
    earlier = json.loads(args.out.read_text())["kinds"] if args.out.is_file() else []
    try:
        all_kinds = kinds(make_inputs(args.data, folder), args.ft_steps)
        for name in args.only or [*all_kinds, "live"]:
            rows.append(measure_live(args.live_frames) if name == "live" else
                        measure(name, all_kinds[name], args.ft_steps, args.repeat, args.timeout))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(  # after each kind: a partial run keeps its rows
                {"what": "issue 15: server peak RSS per kind of request",
                 "budget_mib": BUDGET_MIB, "ft_steps": args.ft_steps, "machine": machine_facts(),
                 "torch_threads_server": 1,
                 "kinds": [r for r in earlier if r["kind"] not in {x["kind"] for x in rows}]
                 + rows}, indent=1) + "\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(markdown_table(rows))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
