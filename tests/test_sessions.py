"""Per-session keeping in the Space (``talking_heads.sessions``): the heavy objects a session
keeps go when it ends, and a file a session uploaded is deleted only when nobody holds it."""

from __future__ import annotations

from talking_heads.sessions import SessionObjects


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
