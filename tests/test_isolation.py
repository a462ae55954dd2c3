"""Issue 8, isolation: private per-request folders removed after serving, uploads and results
deleted after ``keep_files_s``, no reads outside Gradio's cache, nothing unpickled, Hub weights
checked against the pinned revision, server limits whatever the API caller sends."""

from __future__ import annotations

import ast
import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from talking_heads import weights
from talking_heads.limits import Limits

from app_server import launched_app
from conftest import PROJECT_ROOT

EXAMPLE = str(PROJECT_ROOT / "examples" / "astronaut.jpg")
LIMITS = Limits(keep_files_s=3, max_upload_mb=1, max_driving_frames=5, max_ft_steps=50)
ARGS = ("preset", "talking", None, "ff", 10, True, "crop", True)  # after the photos
# Gradio deletes files from background tasks (expiry every second here, session end after
# the heartbeat stops). The waits below return as soon as the files are gone; the limit is
# only there to fail a run where they never go, so it is generous for a loaded machine.
BACKGROUND_WAIT_S = 180


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from talking_heads import gradio_adapter

    work = tmp_path_factory.mktemp("requests")
    gradio_adapter.WORK_ROOT = str(work)
    try:
        with launched_app(max_seconds=2.0, limits=LIMITS) as (demo, url):
            yield demo, url, work
    finally:
        gradio_adapter.WORK_ROOT = None


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[1], verbose=False)


def _cached_files(demo) -> set[str]:
    """Files of requests in Gradio's cache (not the app's own assets, e.g. the preset
    previews, which Gradio keeps for the page's lifetime)."""
    assets = set().union(*(getattr(block, "keep_in_cache", set())
                           for block in demo.blocks.values()))
    return {path for files in demo.temp_file_sets for path in files} - assets


@pytest.mark.timeout(900)  # room for the background waits
def test_request_folders_are_removed_and_files_expire(served, client, monkeypatch, tmp_path):
    from gradio_client import handle_file

    demo, _, work = served
    seen = []
    from talking_heads.pipeline import Animator  # spy on where outputs are written

    original = Animator.drive

    def spy(self, avatar, driving, out_path, *args, **kwargs):
        seen.append(Path(out_path))
        assert Path(out_path).parent.is_dir()
        return original(self, avatar, driving, out_path, *args, **kwargs)

    monkeypatch.setattr(Animator, "drive", spy)
    # The example photo itself is one of the app's assets (its examples gallery), which Gradio
    # keeps; a copy with other bytes is a visitor's upload.
    mine = tmp_path / "mine.jpg"
    mine.write_bytes(Path(EXAMPLE).read_bytes() + b"\0")
    video_path, notes = client.predict([handle_file(str(mine))], *ARGS, api_name="/animate")
    assert Path(video_path).is_file()
    assert len(seen) == 1 and seen[0].parent.parent == work
    assert not list(work.iterdir()), "the request's folder must be gone once served"
    files = _cached_files(demo)
    assert any(f.endswith(".mp4") for f in files) and any(f.endswith(".jpg") for f in files)
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo")
    with pytest.raises(Exception, match=r"photo 1 \(notes\.jpg\) is not an image"):
        client.predict([handle_file(str(fake))], *ARGS, api_name="/animate")
    assert not list(work.iterdir()), "a failed request leaves nothing either"
    deadline = time.time() + LIMITS.keep_files_s + BACKGROUND_WAIT_S
    while time.time() < deadline and any(Path(f).exists() for f in files):
        time.sleep(0.5)
    assert not any(Path(f).exists() for f in files), "uploads and results must expire"


@pytest.mark.timeout(900)  # room for the background waits
def test_files_go_when_the_session_ends(tmp_path):
    """With a long expiry, a client's uploads and result, and its adapted person, are let go
    as soon as it closes; a photo another session still holds, and the app's own example,
    stay."""
    from gradio_client import Client, handle_file

    photo = tmp_path / "mine.jpg"  # same pixels as the example, different bytes
    photo.write_bytes(Path(EXAMPLE).read_bytes() + b"\0")
    shared = tmp_path / "shared.jpg"
    shared.write_bytes(Path(EXAMPLE).read_bytes() + b"\0\0")
    with launched_app(max_seconds=1.0, limits=Limits(keep_files_s=3600)) as (demo, url):
        one, two = Client(url, verbose=False), Client(url, verbose=False)
        one.predict([handle_file(str(photo)), handle_file(str(shared))], *ARGS,
                    api_name="/animate")
        two.predict([handle_file(str(shared))], api_name="/detect")
        two.predict([handle_file(EXAMPLE)], api_name="/detect")
        held = demo.session_files.held(one.session_hash)
        names = sorted(path.name for path in held)
        assert names == ["mine.jpg", "shared.jpg", "talking-head.mp4"], names
        assert all(path.is_file() for path in held)
        example_copy = next(p for p in demo.session_files.held(two.session_hash)
                            if p.name == "astronaut.jpg")
        assert one.session_hash in demo.handlers.avatars
        one.close()  # the heartbeat ends: Gradio runs the app's unload handler
        deadline = time.time() + BACKGROUND_WAIT_S
        while time.time() < deadline and any(p.is_file() for p in held if p.name != "shared.jpg"):
            time.sleep(0.2)
        gone = {path.name: not path.exists() for path in held}
        assert gone == {"mine.jpg": True, "talking-head.mp4": True, "shared.jpg": False}
        # The same unload handler dropped its avatar first (Handlers.end_session).
        assert one.session_hash not in demo.handlers.avatars
        two.close()
        deadline = time.time() + BACKGROUND_WAIT_S
        shared_copy = next(p for p in held if p.name == "shared.jpg")
        while time.time() < deadline and shared_copy.exists():
            time.sleep(0.2)
        assert not shared_copy.exists(), "the last session holding it has ended"
        assert example_copy.is_file(), "the app's example photo is never deleted"


def _raw_call(url: str, api_name: str, data: list) -> str:
    """POST to Gradio's REST API directly (gradio_client would upload a local path itself),
    then read the event stream: what a hostile caller gets back."""
    request = urllib.request.Request(f"{url}gradio_api/call/{api_name}",
                                     data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event}",
                                timeout=60) as response:
        return response.read().decode()


def test_callers_cannot_make_the_server_read_other_files(served, tmp_path):
    demo, url, _ = served
    secret = tmp_path / "secret.jpg"  # a real photo outside Gradio's upload folder
    secret.write_bytes(Path(EXAMPLE).read_bytes())
    forged = {"path": str(secret), "meta": {"_type": "gradio.FileData"}, "orig_name": "a.jpg"}
    answer = _raw_call(url, "detect", [[forged]])
    assert "event: error" in answer and "data: null" not in answer.split("event: error")[0]
    answer = _raw_call(url, "animate", [[forged], *ARGS])
    assert "event: error" in answer and ".mp4" not in answer
    avatar = dict(forged, path=str(tmp_path / "secret.avatar.safetensors"))
    Path(avatar["path"]).write_bytes(b"\0" * 64)
    answer = _raw_call(url, "animate", [None, *ARGS, "result", avatar])
    assert "event: error" in answer and ".mp4" not in answer
    for path in (str(secret), str(PROJECT_ROOT / "app.py"), "/etc/hostname", "../app.py"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert error.value.code in (403, 404)
    assert demo.allowed_paths == []


def test_limits_hold_whatever_the_api_caller_sends(served, client, tmp_path):
    from gradio_client import handle_file

    photo = handle_file(EXAMPLE)
    # The app checks the range (named messages: test_app); the pipeline checks again
    # (test_bad_input).
    with pytest.raises(Exception, match=r"steps \(fine-tuning steps\) must be a whole number "
                       r"from 1 to 50 \(got 5000\)"):
        client.predict([photo], "preset", "talking", None, "ft", 5000, True, "crop", True,
                       api_name="/animate")
    with pytest.raises(Exception, match="Upload between 1 and 8 photos"):
        client.predict([handle_file(EXAMPLE) for _ in range(9)], *ARGS, api_name="/animate")
    with pytest.raises(Exception, match="preset must be one of .* \\(got '../../etc/passwd'\\)"):
        client.predict([photo], "preset", "../../etc/passwd", None, "ff", 10, True, "crop",
                       True, api_name="/animate")
    from talking_heads import video

    video_path, notes = client.predict([photo], *ARGS, api_name="/animate")
    assert video.probe(video_path).num_frames == LIMITS.max_driving_frames
    assert "driving motion cut to 5 frames" in notes
    big = tmp_path / "big.jpg"
    big.write_bytes(Path(EXAMPLE).read_bytes() + b"\0" * (2 << 20))  # 2 MB > 1 MB limit
    with pytest.raises(Exception, match="(?i)too large|413|exceed"):
        client.predict([handle_file(str(big))], *ARGS, api_name="/animate")


def _raw_upload(url: str, name: str, payload: bytes) -> tuple[int, str]:
    """A multipart POST to Gradio's upload route, as a caller without gradio_client (which
    checks the size itself before sending) would make it: (HTTP status, body)."""
    boundary = "talkingheadsboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}gradio_api/upload", data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_server_refuses_uploads_over_the_size_limit(served):
    """The limit is the server's: a raw upload over MAX_UPLOAD_MB gets HTTP 413, while a
    photo under it is accepted."""
    _, url, _ = served
    photo = Path(EXAMPLE).read_bytes()
    assert len(photo) < LIMITS.max_upload_mb << 20
    status, body = _raw_upload(url, "ok.jpg", photo)
    assert status == 200 and json.loads(body)[0].endswith("ok.jpg")
    status, body = _raw_upload(url, "big.jpg", photo + b"\0" * (2 << 20))  # 2 MB > 1 MB
    assert status == 413 and "maximum allowed size" in body


def test_limits_come_from_the_environment_and_are_shown(served):
    limits = Limits.from_environment({"TALKING_HEADS_MAX_FT_STEPS": "500",
                                      "TALKING_HEADS_MAX_DRIVING_SECONDS": "7.5"})
    assert (limits.max_ft_steps, limits.max_driving_seconds) == (500, 7.5)
    assert limits.max_photos == Limits().max_photos
    with pytest.raises(ValueError, match="TALKING_HEADS_MAX_PHOTOS='many' is not an integer"):
        Limits.from_environment({"TALKING_HEADS_MAX_PHOTOS": "many"})
    with pytest.raises(ValueError, match="must be positive"):
        Limits(queue_size=0)
    shown = [c.get("props", {}).get("value") for c in served[0].config["components"]]
    assert LIMITS.summary() in shown and "fine-tuning 1-50 steps" in LIMITS.summary()


def test_nothing_is_ever_unpickled():
    """No pickle import; every torch.load has weights_only=True; np.load never allows pickles."""
    sources = [PROJECT_ROOT / "app.py", *sorted((PROJECT_ROOT / "talking_heads").rglob("*.py"))]
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cPickle", "dill", "joblib"} & set(names), path
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                keywords = {k.arg: k.value for k in node.keywords}
                if node.func.attr == "load" and getattr(node.func.value, "id", "") == "torch":
                    flag = keywords.get("weights_only")
                    assert isinstance(flag, ast.Constant) and flag.value is True, \
                        f"{path}:{node.lineno}"
                if node.func.attr == "load" and getattr(node.func.value, "id", "") == "np":
                    flag = keywords.get("allow_pickle")
                    assert flag is None or (isinstance(flag, ast.Constant) and not flag.value), \
                        f"{path}:{node.lineno}"


SHA = "89abcdef0123456789abcdef0123456789abcdef"


def _fake_hub_cache(root: Path, model_dir: Path, commit: str = SHA) -> Path:
    """A Hub cache as huggingface_hub writes it: blobs named by their etag, linked from
    snapshots/<commit>/ (LFS files: SHA-256; small files: git blob SHA-1)."""
    repo = root / "models--someone--heads"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for file in sorted(model_dir.iterdir()):
        data = file.read_bytes()
        if file.suffix == ".safetensors":
            etag = hashlib.sha256(data).hexdigest()
        else:
            etag = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        (repo / "blobs" / etag).write_bytes(data)
        (repo / "snapshots" / commit / file.name).symlink_to(Path("../../blobs") / etag)
    return repo


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    import torch

    from talking_heads.config import ModelConfig
    from talking_heads.models import TalkingHeadModel

    for name in (weights.ENV_REPO_ID, weights.ENV_REVISION, weights.ENV_CHECKPOINT):
        monkeypatch.delenv(name, raising=False)
    torch.manual_seed(3)
    TalkingHeadModel(ModelConfig.tiny()).save_pretrained(tmp_path / "model")
    TalkingHeadModel(ModelConfig.tiny()).save_pretrained(tmp_path / "bundled" / "cpu")
    repo = _fake_hub_cache(tmp_path / "hf", tmp_path / "model")
    return tmp_path, repo


def _resolve(tmp_path, revision):
    return weights.resolve_weights("someone/heads", revision, bundled=tmp_path / "bundled",
                                   cache_dir=tmp_path / "hf")


def test_hub_weights_are_checked_against_the_pinned_revision(hub_env):
    tmp_path, repo = hub_env
    source = _resolve(tmp_path, SHA)
    assert source.kind == "hub" and source.directory.name == SHA and not source.notes
    assert sorted(weights.verify_snapshot(source.directory, SHA)) == ["config.json",
                                                                      "model.safetensors"]
    unpinned = _resolve(tmp_path, "main")  # a branch: used, but the user is told
    assert unpinned.kind == "hub" and "not pinned to a commit hash" in unpinned.notes[0]


def test_tampered_hub_weights_are_refused(hub_env):
    tmp_path, repo = hub_env
    blob = (repo / "snapshots" / SHA / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    source = _resolve(tmp_path, SHA)
    assert source.kind == "bundled"
    assert any("model.safetensors does not match its published hash" in n for n in source.notes)
