"""Issue 15, no creeping memory: 200+ mixed requests against one server, RSS after each.

Run by hand (never in CI). One server (the real app, bundled default weights, default limits,
driving cut to ``--seconds``) serves ``--requests`` requests one after another, each from a
new ``gradio_client`` session, cycling through a mix of what users send: FF with each preset
and 1-3 photos of five different people, ``/detect`` on 1-3 photos, an uploaded clip (three
different real clips), and a small FT (T = 1, ``--ft-steps`` steps). The server's VmRSS is
read after each answer (0.3 s later). The check: RSS after the last request is within 100 MB
of RSS after the first 10.

    python benchmarks/soak.py                    # 200 requests, ~30-60 min on 2 cores
    python benchmarks/soak.py --requests 40 --seconds 1

Writes ``benchmarks/results/soak.json`` and the curve ``benchmarks/results/soak.png``.
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
CLIPS = ["clips/sadtalker__WDA_KatieHill_000.mp4", "clips/liveportrait__d0.mp4",
         "clips/mimictalk__German_20s.mp4"]
PRESETS = ["talking", "nodding", "turning", "smiling", "expressions", "talking_animated"]
ALLOWED_CREEP_MB = 100


def make_photos(data: Path, folder: Path) -> dict[str, list[str]]:
    """Three photos of each John, upscaled to 400 px JPEGs (faces well over 64 px)."""
    import cv2
    import numpy as np
    from PIL import Image

    people = {}
    for person in sorted((data / "photos" / "johns").iterdir()):
        if not person.is_dir():
            continue
        paths = []
        for index, source in enumerate(sorted(person.glob("*.jpg"))[:3]):
            image = np.asarray(Image.open(source).convert("RGB"))
            out = folder / f"{person.name}_{index}.jpg"
            Image.fromarray(cv2.resize(image, (400, 400), interpolation=cv2.INTER_CUBIC)).save(
                out, quality=90)
            paths.append(str(out))
        people[person.name] = paths
    return people


def schedule(count: int, people: dict[str, list[str]], data: Path) -> list[dict]:
    """The request mix, in a fixed order (every 10: 5 FF, 2 detect, 2 clips, 1 FT)."""
    names = sorted(people)
    pattern = ["ff", "detect", "ff", "clip", "ff", "ft", "ff", "detect", "ff", "clip"]
    plan = []
    for index in range(count):
        kind = pattern[index % len(pattern)]
        person = people[names[index % len(names)]]
        # 1, 2 or 3 photos in turn, so that the first 10 requests already load everything
        # loaded lazily (dlib's face-recognition model comes with the first 2-photo request).
        photos = person[:1 + index % 3]
        request = {"index": index, "kind": kind, "photos": photos}
        if kind == "ff":
            request["preset"] = PRESETS[(index // 2) % len(PRESETS)]
        elif kind == "clip":
            request["video"] = str(data / CLIPS[(index // 10) % len(CLIPS)])
            request["photos"] = person[:1]
        elif kind == "ft":
            request["photos"] = person[:1]
            request["preset"] = "talking"
        plan.append(request)
    return plan


def send(client, request: dict, ft_steps: int, timeout_s: float) -> str:
    from gradio_client import handle_file

    files = [handle_file(path) for path in request["photos"]]
    if request["kind"] == "detect":
        gallery = client.submit(files, api_name="/detect").result(timeout=timeout_s)
        return f"{len(gallery)} previews"
    video = request.get("video")
    mode = "ft" if request["kind"] == "ft" else "ff"
    _, notes = client.submit(files, "video" if video else "preset",
                             request.get("preset", "talking"),
                             handle_file(video) if video else None, mode, ft_steps, True,
                             "photo", True, api_name="/animate").result(timeout=timeout_s)
    return notes.splitlines()[-1] if notes else ""


def draw_curve(rss: list[float], kinds: list[str], out: Path, title: str) -> None:
    """RSS after each request as a PNG (Pillow only: matplotlib is not a dependency)."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 1000, 500, 70, 20, 50, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    baseline = rss[min(9, len(rss) - 1)]
    allowed = ALLOWED_CREEP_MB * 1e6 / 2**20  # MB -> MiB
    low = min(rss) - 50
    high = max(max(rss), baseline + allowed) + 40
    x = lambda i: left + (width - left - right) * i / max(1, len(rss) - 1)  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (high - v) / (high - low)  # noqa: E731
    step = 50 if high - low < 600 else 100
    for value in range(int(low // step + 1) * step, int(high) + 1, step):
        draw.line([(left, y(value)), (width - right, y(value))], fill=(225, 225, 225))
        draw.text((5, y(value) - 6), f"{value} MiB", fill="black")
    for index in range(0, len(rss), 25):
        draw.text((x(index) - 8, height - bottom + 8), str(index + 1), fill="black")
    draw.text((width // 2 - 80, height - 22), "request number (one after another)", fill="black")
    draw.text((left, 12), title, fill="black")
    for offset, colour in ((0, (120, 120, 120)), (allowed, (200, 0, 0))):
        draw.line([(left, y(baseline + offset)), (width - right, y(baseline + offset))],
                  fill=colour)
    draw.text((width - right - 260, y(baseline + allowed) - 14),
              "after request 10 + 100 MB", fill=(200, 0, 0))
    colours = {"ff": (30, 90, 200), "detect": (0, 150, 0), "clip": (200, 120, 0),
               "ft": (160, 0, 160)}
    draw.line([(x(i), y(v)) for i, v in enumerate(rss)], fill=(60, 60, 60), width=1)
    for index, (value, kind) in enumerate(zip(rss, kinds)):
        draw.ellipse([x(index) - 2, y(value) - 2, x(index) + 2, y(value) + 2],
                     fill=colours.get(kind, "black"))
    for n, (kind, colour) in enumerate(colours.items()):
        draw.ellipse([left + 10 + 90 * n, top + 8, left + 16 + 90 * n, top + 14], fill=colour)
        draw.text((left + 20 + 90 * n, top + 4), kind, fill="black")
    image.save(out)


TRIM_SITE = """import threading, time
from talking_heads.limits import release_free_memory

def _trim():
    while True:
        time.sleep({every})
        release_free_memory()

threading.Thread(target=_trim, daemon=True, name="malloc-trim").start()
"""


def trimming_site(folder: Path, every_s: float) -> Path:
    """A folder whose ``sitecustomize.py`` starts a thread that calls
    ``limits.release_free_memory()`` every ``every_s`` seconds in the server (Python imports
    it at start-up), standing in for the app calling it after each request."""
    site = folder / "trim-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(TRIM_SITE.format(every=every_s))
    return site


def summarise(rows: list[dict], args, server, facts, idle, server_env) -> dict:
    """The result so far (written every 10 requests, so a stopped run keeps its curve)."""
    rss = [r["rss_after_mib"] for r in rows]
    after_10, last = rss[min(9, len(rss) - 1)], rss[-1]
    creep_mb = (last - after_10) * 2**20 / 1e6
    result = {"what": "issue 15: soak, mixed requests one after another, RSS after each",
              "requests": len(rows), "requests_planned": args.requests,
              "driving_seconds": args.seconds, "ft_steps": args.ft_steps,
              "server_env": {k: v for k, v in server_env.items() if k != "PYTHONPATH"},
              "malloc_trim_every_s": args.trim_every or None, "weights": server.weights, "limits": server.limits,
              "started": facts, "finished": machine_facts(), "idle_rss_mib": idle,
              "rss_after_10_mib": after_10, "rss_after_last_mib": last,
              "max_rss_after_mib": max(rss), "peak_rss_mib": server.peak_mib(),
              "creep_mb": round(creep_mb, 1), "allowed_creep_mb": ALLOWED_CREEP_MB,
              "passed": creep_mb <= ALLOWED_CREEP_MB, "server_alive_after": server.alive(),
              "errors": sum(r["outcome"].startswith("error") for r in rows),
              "per_request": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    env = " ".join([f"{k}={v}" for k, v in server_env.items() if k != "PYTHONPATH"]
                   + ([f"malloc_trim every {args.trim_every:g} s"] if args.trim_every else []))
    draw_curve(rss, [r["kind"] for r in rows], args.out.with_suffix(".png"),
               f"server RSS after each of {len(rows)} mixed requests{' (' + env + ')' if env else ''}"
               f": after 10 {after_10:.0f} MiB, after {len(rows)} {last:.0f} MiB "
               f"({creep_mb:+.0f} MB; allowed +100)")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=1.0, help="driving cut (max_seconds)")
    parser.add_argument("--ft-steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per request")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment of the server, e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--trim-every", type=float, default=0.0, metavar="S",
                        help="emulate an app that calls limits.release_free_memory() after "
                        "each request: the server trims malloc every S seconds (0: never)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from gradio_client import Client

    folder = Path(tempfile.mkdtemp(prefix="talking-heads-soak-"))
    facts = machine_facts()
    server_env = dict(item.split("=", 1) for item in args.env)
    if args.trim_every > 0:
        server_env["PYTHONPATH"] = os.pathsep.join([str(trimming_site(folder, args.trim_every)),
                                                    str(PROJECT_ROOT)])
    server = AppServer(env=server_env, max_seconds=args.seconds)
    rows = []
    try:
        plan = schedule(args.requests, make_photos(args.data, folder), args.data)
        idle = server.rss_mib()
        print(f"server up in {server.startup_s:.0f} s, idle {idle} MiB", flush=True)
        for request in plan:
            client = Client(server.url, verbose=False)
            start = time.perf_counter()
            try:
                outcome = send(client, request, args.ft_steps, args.timeout)
            except Exception as error:  # noqa: BLE001 - recorded, the soak goes on
                outcome = f"error: {type(error).__name__}: {error}"
            latency = time.perf_counter() - start
            client.close()
            time.sleep(0.3 + args.trim_every)
            rss = server.rss_mib()
            rows.append({"index": request["index"] + 1, "kind": request["kind"],
                         "photos": len(request["photos"]), "preset": request.get("preset"),
                         "video": Path(request["video"]).name if request.get("video") else None,
                         "latency_s": round(latency, 2), "rss_after_mib": rss,
                         "outcome": outcome[:200]})
            print(f"{request['index'] + 1:4d} {request['kind']:6s} {latency:6.1f} s  RSS {rss} "
                  f"MiB  {outcome[:90]}", flush=True)
            if not server.alive():
                break
            if len(rows) % 10 == 0:
                summarise(rows, args, server, facts, idle, server_env)
        result = summarise(rows, args, server, facts, idle, server_env)
        print(f"RSS after 10: {result['rss_after_10_mib']} MiB, after {len(rows)}: "
              f"{result['rss_after_last_mib']} MiB ({result['creep_mb']:+.1f} MB): "
              f"{'pass' if result['passed'] else 'FAIL'}; wrote {args.out}")
        return 0
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
