"""Per-session keeping in the Space (``talking_heads.sessions``): the heavy objects a session
keeps go when it ends, and a file a session uploaded is deleted only when nobody holds it."""

from __future__ import annotations

import hashlib
import os

from talking_heads.sessions import SessionFiles, SessionObjects


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_object_is_found_by_its_session_and_token_only():
    store = SessionObjects(60)
    avatar, other = object(), object()
    token = store.put("a", avatar)
    assert isinstance(token, str) and len(token) < 20  # what the session's gr.State holds
    assert store.get("a", token) is avatar
    assert store.get("b", token) is None  # another session cannot reach it
    assert store.get("a", None) is None  # a State reset to None: nothing kept
    assert store.put("a", avatar) == token  # the same object keeps its token
    new = store.put("a", other)
    assert new != token and store.get("a", token) is None and store.get("a", new) is other
    assert store.put(None, avatar) is None and store.put("a", None) is None
    assert store.get("a", new) is other  # put(..., None) does not drop it


def test_ending_a_session_frees_its_object():
    store = SessionObjects(60)
    mine, theirs = store.put("mine", object()), store.put("theirs", object())
    store.release("mine")
    assert "mine" not in store and store.get("mine", mine) is None
    assert store.get("theirs", theirs) is not None and len(store) == 1
    store.release("mine")  # twice, or a session that kept nothing: no error
    store.release(None)


def test_objects_of_sessions_that_never_end_go_after_their_time_to_live():
    clock = FakeClock()
    store = SessionObjects(10, clock=clock)
    idle, used = store.put("idle", object()), store.put("used", object())
    clock.now = 8
    assert store.get("used", used) is not None  # a use restarts its time
    clock.now = 11
    store.put("new", object())  # each put drops what nobody used for over 10 s
    assert "idle" not in store and store.get("idle", idle) is None
    assert store.get("used", used) is not None and len(store) == 2


def upload(cache, content: bytes, name: str = "photo.jpg"):
    """Store a file as Gradio's upload route does: in a folder named by its content hash,
    written aside, then renamed into place (replacing an earlier copy)."""
    folder = cache / hashlib.sha256(content).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    written = cache / f"upload-{len(list(cache.iterdir()))}.tmp"
    written.write_bytes(content)
    os.rename(written, folder / name)
    return folder / name


def test_a_photo_another_session_just_uploaded_survives_the_end_of_the_first(tmp_path):
    """The soak's race: session one ends after session two has uploaded the same photo (same
    path) but before two's handler held it. The file is two's copy now, so it stays; it goes
    when two ends. Nothing is left aside in the folder."""
    cache = tmp_path / "cache"
    files = SessionFiles(cache)
    path = upload(cache, b"same photo")
    files.hold("one", [path])
    assert upload(cache, b"same photo") == path  # two's upload, not yet held
    assert files.release("one") == []
    assert path.read_bytes() == b"same photo" and os.listdir(path.parent) == [path.name]
    files.hold("two", [path])  # two's handler runs
    assert files.release("two") == [path.resolve()] and not path.exists()


def test_the_last_holder_deletes_the_newest_copy(tmp_path):
    """Two holds it, one uploads the same photo again and holds it too: whoever ends last
    deletes it (the newest hold says which file it is), so nothing is left behind."""
    cache = tmp_path / "cache"
    files = SessionFiles(cache)
    path = upload(cache, b"same photo")
    files.hold("two", [path])
    files.hold("one", [upload(cache, b"same photo")])
    assert files.release("one") == [] and path.exists()  # two still holds it
    assert files.release("two") == [path.resolve()] and not path.exists()


def test_a_result_served_again_is_not_deleted_by_its_first_session(tmp_path):
    """``save_file_to_cache`` hands out an existing copy again after touching it: the session
    it was first served to does not delete it from under the next one."""
    cache = tmp_path / "cache"
    files = SessionFiles(cache)
    path = upload(cache, b"same video", "talking-head.mp4")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    files.hold("one", [path])
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))  # served again to two (a later time)
    assert files.release("one") == [] and path.exists()
    files.hold("two", [path])
    assert files.release("two") == [path.resolve()]
