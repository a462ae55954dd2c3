"""Shared plumbing of the bench_*.py scripts: machine facts, peak memory, JSON output.

Benchmarks are run by hand (never in CI): numbers depend on the machine and on its load, so
every result records both (CPU model, cores, torch version and threads, load averages).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The vector extensions that matter for torch's CPU kernels."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
                                if f in flags)
    except OSError:
        pass
    return ""


def machine_info() -> dict:
    """What the numbers were measured on."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_flags": cpu_flags(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def write_result(path: Path | None, result: dict) -> None:
    """Add machine facts and this process's peak memory; print and optionally save as JSON."""
    result = {**result, "peak_rss_mib": round(peak_rss_mib(), 1), "machine": machine_info(),
              "load_average_end": load_average()}
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def build_model(config: str, checkpoint: str | None):
    """A TalkingHeadModel: trained weights when given, else seeded random init (speed does not
    depend on the weights' values)."""
    from talking_heads.config import ModelConfig
    from talking_heads.models import TalkingHeadModel

    if checkpoint:
        return TalkingHeadModel.from_pretrained(checkpoint).eval()
    torch.manual_seed(0)
    return TalkingHeadModel(ModelConfig.preset(config)).eval()
