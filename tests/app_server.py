"""The Space launched on localhost with a tiny seeded model (shared by the app tests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from conftest import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def launched_app(max_seconds: float = 0.4, limits=None, model: str = "tiny"):
    """Yield (demo, url) of app.py's Blocks serving a tiny untrained model, queued and
    launched by ``app.serve`` with ``limits`` (default: ``Limits()``)."""
    sys.path.insert(0, str(PROJECT_ROOT))
    import app
    from talking_heads.config import ModelConfig
    from talking_heads.limits import Limits
    from talking_heads.models import TalkingHeadModel
    from talking_heads.pipeline import Animator
    from talking_heads.weights import WeightsSource

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one thread is far faster under load
    torch.manual_seed(0)
    limits = limits or Limits()
    animator = Animator(TalkingHeadModel(ModelConfig.preset(model)),
                        WeightsSource("untrained", None),
                        limits=limits)
    # A private Gradio cache: uploads are content-addressed, so servers of other test runs on
    # the same machine would otherwise share (and, on closing, delete) each other's files.
    cache = tempfile.mkdtemp(prefix="talking-heads-gradio-")
    previous_cache = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = cache
    demo = app.build_demo(animator, max_seconds=max_seconds)
    port = free_port()
    app.serve(demo, limits, server_name="127.0.0.1", server_port=port,
              prevent_thread_lock=True, quiet=True)
    try:
        yield demo, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        torch.set_num_threads(threads)
        if previous_cache is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_cache
        shutil.rmtree(cache, ignore_errors=True)


@contextmanager
def app_process(log_dir: Path, seconds: float = 0.4, **limits: str):
    """Yield (process, url) of this file's server in a process of its own, with
    ``TALKING_HEADS_<LIMIT>`` set from ``limits``: a crash of the server then fails the test
    (``process.poll()`` is not None) instead of killing pytest.

    Start-up is awaited by event, not by a deadline: the server prints its URL once it
    listens, or exits; on a loaded machine it may take minutes, and pytest-timeout is the
    backstop for a hang. Its stderr goes to ``log_dir/stderr.txt``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1", **{f"TALKING_HEADS_{k.upper()}": v for k, v in limits.items()})
    errors = Path(log_dir) / "stderr.txt"
    with open(errors, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "tests" / "app_server.py"),
             "--seconds", str(seconds)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=PROJECT_ROOT)
    try:
        url = next((line.strip() for line in process.stdout if line.startswith("http")), None)
        if url is None:  # stdout closed: the server exited before listening
            process.wait()
            raise RuntimeError(f"server exited ({process.returncode}): "
                               f"{errors.read_text()[-2000:]}")
        # Keep draining stdout so that a chatty server never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve until killed, printing the URL (for tests that need the server in another
    process): ``python tests/app_server.py [--model tiny|cpu] [--seconds S]``; limits from
    the ``TALKING_HEADS_*`` environment variables."""
    import argparse
    import time

    sys.path.insert(0, str(PROJECT_ROOT))
    from talking_heads.limits import Limits

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["tiny", "cpu"], default="tiny")
    parser.add_argument("--seconds", type=float, default=0.4)
    args = parser.parse_args(argv)
    with launched_app(args.seconds, Limits.from_environment(), args.model) as (_, url):
        print(url, flush=True)
        while True:
            time.sleep(1.0)


if __name__ == "__main__":
    main()
