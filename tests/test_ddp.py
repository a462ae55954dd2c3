"""Multi-process meta-learning through torchrun (DDP over gloo, 2 CPU processes).

Runs the real CLI (`python -m torch.distributed.run ... -m talking_heads train`) on real clips;
the trainer all-gathers a checksum of every parameter and buffer of E, G and D at each
checkpoint and stops if the replicas differ. The test reads those records back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from episode_data import build_tiny_preprocessed
from talking_heads.training.checkpoint import load_training_state

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(shared_data, tmp_path_factory) -> Path:
    return build_tiny_preprocessed(shared_data, tmp_path_factory.getbasetemp() / "tiny_data")


# Generous limits, meant only to catch a hang: four steps take seconds on an idle machine,
# but two ranks plus torchrun share a loaded 2-core machine with other jobs. The run's own
# limit stays under pytest-timeout's, so that on a hang the whole process group is killed
# here (pytest-timeout would leave the ranks running).
RUN_LIMIT_S = 1200


@pytest.mark.timeout(RUN_LIMIT_S + 300)
def test_two_cpu_processes_keep_identical_replicas(data_dir, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "talking_heads", "train", "--data", str(data_dir),
               "--config", "tiny", "--out", str(out), "--steps", "4", "--device", "cpu",
               "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Own session: on a timeout the whole group goes (torchrun and both ranks), so no rank is
    # left running, or holding the output pipes open, after the test.
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"torchrun did not finish in {RUN_LIMIT_S} s:\n" + stdout[-3000:]
                    + stderr[-3000:])
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    start = [r for r in records if r["kind"] == "start"]
    assert start and start[0]["world_size"] == 2
    checks = [r for r in records if r["kind"] == "replicas"]
    assert [r["step"] for r in checks] == [2, 4]
    assert all(r["world_size"] == 2 and r["spread"] == 0.0 for r in checks)
    # Losses are averaged over both ranks and logged once per step, by rank 0 only.
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert load_training_state(out / "last.pt")["step"] == 4
