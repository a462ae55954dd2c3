"""Issue 15: overlapping requests cannot crash the server.

dlib's native objects crash the process when two threads use one at once (REVIEW.md B1), so
the threaded checks run in a child process: a crash there fails the test with the child's
exit status instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from talking_heads import video
from talking_heads.evaluation import identity

from app_server import app_process
from conftest import PROJECT_ROOT

CLIP = "clips/sadtalker__WDA_KatieHill_000.mp4"  # train split, has audio

# Run in a child process: argv = [photos_dir, "detector" | "identity"]. Two threads call one
# shared object many times on the same images; every answer must equal the one-thread answer.
TWO_THREADS = r"""
import sys, threading
from pathlib import Path
import cv2, numpy as np

def images(folder):
    out = []
    for path in sorted(Path(folder).glob("*/*.jpg"))[:8]:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        out.append(cv2.resize(rgb, (512, 512)))      # the sizes of REVIEW.md B1's crash
        canvas = np.full((300, 400, 3), 128, np.uint8)
        canvas[75:225, 125:275] = rgb
        out.append(canvas)
    return out

folder, target = sys.argv[1], sys.argv[2]
if target == "detector":
    from talking_heads.landmarks.detector import get_detector
    shared = get_detector("dlib")
    call = lambda image: shared.detect(image).points
else:
    from talking_heads.evaluation.identity import FaceIdentity
    shared = FaceIdentity()
    call = shared.descriptor
inputs = images(folder)
expected = [call(image) for image in inputs]
assert all(e is not None for e in expected), "every input shows a face"
wrong = []

def work(order):
    for _ in range(3):
        for k in order:
            if not np.array_equal(call(inputs[k]), expected[k]):
                wrong.append(k)

threads = [threading.Thread(target=work, args=(order,))
           for order in (range(len(inputs)), range(len(inputs))[::-1])]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(f"{2 * 3 * len(inputs)} calls, {len(wrong)} wrong")
sys.exit(1 if wrong else 0)
"""


def _two_threads(photos_dir: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TWO_THREADS, str(photos_dir), target],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)


@pytest.mark.parametrize("target", ["detector", "identity"])
def test_one_shared_dlib_object_survives_two_threads(photos_dir, target):
    """Without the locks this aborted or segfaulted the child (exit -6 / -11) every run."""
    result = _two_threads(photos_dir, target)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert "96 calls, 0 wrong" in result.stdout


def test_shared_identity_is_created_once_under_racing_first_calls(monkeypatch):
    """Eight threads asking at once all get one instance, built once."""
    built = []

    class Counted:
        def __init__(self) -> None:
            built.append(self)

    monkeypatch.setattr(identity, "FaceIdentity", Counted)
    monkeypatch.setattr(identity, "_shared", None)
    start = threading.Barrier(8)
    got = []

    def ask() -> None:
        start.wait()
        got.append(identity.shared_identity())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and got == built * 8


@pytest.fixture(scope="module")
def two_slot_server(tmp_path_factory, shared_data):
    """The app in its own process with two requests at a time: /detect and /animate then run
    side by side on the one shared detector (the case that crashed)."""
    with app_process(tmp_path_factory.mktemp("server"), seconds=2, concurrency="2") as server:
        yield server


# Generous: everything runs on a loaded 2-core machine; what is checked is that each request
# is answered and the server survives, not how fast.
@pytest.mark.timeout(900)
def test_detect_while_animating_an_uploaded_clip(two_slot_server, shared_data, photos_dir):
    from gradio_client import Client, handle_file

    process, url = two_slot_server
    client = Client(url, verbose=False)
    photos = [handle_file(str(p)) for p in sorted(photos_dir.glob("*/*.jpg"))[:6]]
    example = handle_file(str(PROJECT_ROOT / "examples" / "astronaut.jpg"))
    render = client.submit([example], "video", "talking", handle_file(str(shared_data / CLIP)),
                           "ff", 10, True, "photo", True, api_name="/animate")
    galleries = []
    while True:  # /detect again and again until the render is done (at least once)
        galleries.append(client.predict(photos, api_name="/detect"))
        if render.done():
            break
    video_path, notes = render.result()
    info = video.probe(video_path)
    assert info.num_frames == 50 and info.audio_codec == "aac"  # 2 s of the 25 fps clip
    for gallery in galleries:
        assert [item["caption"].split(" (")[0] for item in gallery] == \
            [f"photo {i}: face found" for i in range(1, 7)]
    assert process.poll() is None, "the server crashed"
    assert len(client.predict(photos[:1], api_name="/detect")) == 1  # and still serves
