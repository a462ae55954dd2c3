"""The Space's public API, exercised with gradio_client against the app on localhost."""

from __future__ import annotations

import pytest

from talking_heads import video

from app_server import launched_app
from conftest import PROJECT_ROOT

EXAMPLE = str(PROJECT_ROOT / "examples" / "astronaut.jpg")
CLIP = "clips/sadtalker__WDA_KatieHill_000.mp4"  # train split, has audio


@pytest.fixture(scope="module")
def served():
    with launched_app(max_seconds=0.4) as (demo, url):
        yield demo, url


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[1], verbose=False)


def test_readme_example_animate(client):
    """The call documented in README.md ("Using the Space from Python")."""
    from gradio_client import handle_file

    video_path, notes = client.predict(
        [handle_file(EXAMPLE)],   # photos of one person (1-8)
        "preset",                 # driving: "preset" or "video"
        "talking",                # preset name
        None,                     # driving video (when driving == "video")
        "ff",                     # mode: "ff" (instant) or "ft" (fine-tune)
        100,                      # fine-tuning steps
        True,                     # relative motion
        "photo",                  # "photo": paste back; "crop": face crop only
        True,                     # visible SYNTHETIC label
        api_name="/animate")
    info = video.probe(video_path)
    assert info.video_codec == "h264" and info.num_frames == 12  # 0.4 s of a 30 fps preset
    assert info.metadata["comment"] == video.SYNTHETIC_TAG
    assert "UNTRAINED" in notes


def test_uploaded_driving_video_keeps_audio(client, shared_data):
    from gradio_client import handle_file

    video_path, notes = client.predict(
        [handle_file(EXAMPLE)], "video", "talking", handle_file(str(shared_data / CLIP)),
        "ff", 100, True, "crop", False, api_name="/animate")
    info = video.probe(video_path)
    assert info.audio_codec == "aac" and info.num_frames == 10  # 0.4 s at 25 fps
    assert "cut to its first" in notes


def test_detect_shows_each_photo(client, photos_dir):
    from gradio_client import handle_file

    john = sorted((photos_dir / "John_Simm").glob("*.jpg"))[0]
    gallery = client.predict([handle_file(EXAMPLE), handle_file(str(john))], api_name="/detect")
    # The positive message: "face" alone would also match "photo 1: no face found".
    assert [item["caption"] for item in gallery] == [
        "photo 1: face found (astronaut.jpg)", f"photo 2: face found ({john.name})"]


def test_errors_reach_the_caller(client, tmp_path):
    import cv2
    import numpy as np
    from gradio_client import handle_file

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((80, 80, 3), 200, np.uint8))
    with pytest.raises(Exception, match="no face found in photo 1"):
        client.predict([handle_file(str(blank))], "preset", "talking", None, "ff", 100, True,
                       "photo", True, api_name="/animate")
    with pytest.raises(Exception, match="Upload a driving video") as error:
        client.predict([handle_file(EXAMPLE)], "video", "talking", None, "ff", 100, True,
                       "photo", True, api_name="/animate")
    assert "'Upload" not in str(error.value)  # the app's own message, not wrapped again


def test_values_out_of_range_are_named_with_what_is_allowed(served, client):
    """Gradio's own slider, radio and dropdown checks would answer first, naming no field
    ("Value 5000 is greater than maximum value ..."); the app's fields pass the value to the
    handlers, whose checks name the field and the values it accepts. The page still draws a
    plain slider, radio and dropdown."""
    import re

    from gradio_client import handle_file

    demo, _ = served
    top = demo.animator.limits.max_ft_steps
    photo = [handle_file(EXAMPLE)]
    sent = {"steps": ("preset", "talking", None, "ft", 5000, True, "crop", False),
            "preset": ("preset", "dance", None, "ff", 100, True, "crop", False),
            "mode": ("preset", "talking", None, "fast", 100, True, "crop", False),
            "framing": ("preset", "talking", None, "ff", 100, True, "full", False),
            "driving_source": ("webcam", "talking", None, "ff", 100, True, "crop", False),
            "layout": ("preset", "talking", None, "ff", 100, True, "crop", False, "wide")}
    expected = {
        "steps": f"steps (fine-tuning steps) must be a whole number from 1 to {top} (got 5000)",
        "preset": "preset must be one of 'talking', 'talking_animated', 'smiling', "
                  "'expressions', 'nodding', 'turning' (got 'dance')",
        "mode": "mode must be one of 'ff' (feed-forward), 'ft' (fine-tuning) (got 'fast')",
        "framing": "framing must be one of 'photo' (pasted into the photo), 'crop' (the face "
                   "crop only) (got 'full')",
        "driving_source": "driving_source must be one of 'preset' (a preset motion), 'video' "
                          "(an uploaded driving video) (got 'webcam')",
        "layout": "layout must be one of result, side_by_side, got 'wide'"}
    for field, values in sent.items():
        with pytest.raises(Exception, match=re.escape(expected[field])):
            client.predict(photo, *values, api_name="/animate")
    with pytest.raises(Exception, match=re.escape(f"from 1 to {top} (got 0)")):
        client.predict(photo, "ft", 0, api_name="/adapt")
    drawn = {c["props"]["label"]: c["type"] for c in demo.config["components"]
             if c["type"] in ("slider", "radio", "dropdown")}
    assert drawn == {"Driving motion": "radio", "Preset": "dropdown", "Mode": "radio",
                     "Fine-tuning steps": "slider", "Output": "radio", "Layout": "radio"}


def test_every_public_event_has_an_api_name(served, client):
    demo, _ = served
    for dependency in demo.config["dependencies"]:
        if dependency.get("api_visibility", "public") == "public":
            assert dependency["api_name"], dependency
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/adapt", "/animate", "/detect"}
    assert not api["unnamed_endpoints"]


def test_a_second_motion_reuses_the_kept_avatar(served):
    """Within one session the adapted person is kept: another preset renders without
    detecting or adapting again, and the notes say so."""
    from gradio_client import Client, handle_file

    client = Client(served[1], verbose=False)  # a session of its own
    args = ("ff", 100, True, "crop", False)
    _, first = client.predict([handle_file(EXAMPLE)], "preset", "talking", None, *args,
                              api_name="/animate")
    assert "kept for this session" in first and "avatar reused" not in first
    _, second = client.predict([handle_file(EXAMPLE)], "preset", "nodding", None, *args,
                               api_name="/animate")
    assert "avatar reused: instant (feed-forward) from 1 photo(s)" in second
    assert "detect 0.0, adapt 0.0" in second
    _, third = client.predict([handle_file(EXAMPLE)], "preset", "nodding", None, "ft", 2,
                              True, "crop", False, api_name="/animate")
    assert "avatar reused" not in third  # another mode is another avatar
    _, fourth = client.predict([handle_file(EXAMPLE)], "preset", "talking", None, "ft", 2,
                               True, "crop", False, api_name="/animate")
    assert "avatar reused: fine-tuned (2 steps) on 1 photo(s)" in fourth


def test_the_end_of_a_session_frees_its_avatar(served):
    """The adapted person lives in the app's own store, not in Gradio's session state (which
    Gradio keeps for an hour after a session closes): the State holds a short token, and the
    app's unload handler drops the avatar. (That the unload handler runs when a client closes
    is test_isolation's test_files_go_when_the_session_ends.)"""
    from types import SimpleNamespace

    from gradio_client import Client, handle_file

    demo, url = served
    client = Client(url, verbose=False)  # a session of its own
    client.predict([handle_file(EXAMPLE)], "preset", "talking", None, "ff", 100, True, "crop",
                   False, api_name="/animate")
    session = client.session_hash
    assert session in demo.handlers.avatars
    import app

    assert demo.server_app.state_holder.capacity == app.STATE_SESSIONS  # not Gradio's 10,000
    state = demo.server_app.state_holder.session_data[session].state_data
    assert state and all(value is None or isinstance(value, (str, int))
                         for value in state.values()), state
    [unload] = [fn for fn in demo.fns.values() if any(t[1] == "unload" for t in fn.targets)]
    unload.fn(SimpleNamespace(session_hash=session))
    assert session not in demo.handlers.avatars and session not in demo.handlers.drivers
    _, notes = client.predict([handle_file(EXAMPLE)], "preset", "talking", None, "ff", 100,
                              True, "crop", False, api_name="/animate")
    assert "avatar reused" not in notes  # its token now finds nothing: adapted again
    client.close()


def test_adapt_returns_an_avatar_file_that_animate_accepts(served, tmp_path):
    """/adapt -> one safetensors avatar file; /animate with only that file renders without
    adapting; a file that is not an avatar gets a message naming the problem."""
    from gradio_client import Client, handle_file

    from talking_heads.avatar import Avatar

    demo, url = served
    path, notes = Client(url, verbose=False).predict(
        [handle_file(EXAMPLE)], "ft", 2, api_name="/adapt")
    assert path.endswith(".avatar.safetensors") and "avatar adapted (fine-tuned" in notes
    avatar = Avatar.load_file(path, demo.animator.model)
    assert avatar.mode == "ft" and avatar.info["steps"] == 2
    fresh = Client(url, verbose=False)  # another session: nothing kept
    video_path, notes = fresh.predict(None, "preset", "talking", None, "ff", 100, True, "crop",
                                      False, "result", handle_file(path), api_name="/animate")
    assert video.probe(video_path).num_frames == 12
    assert "loaded: fine-tuned (2 steps) on 1 photo(s) (no adaptation)" in notes
    assert "adapt 0.0" in notes
    bogus = tmp_path / "me.avatar.safetensors"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(Exception, match="not in safetensors format"):
        fresh.predict(None, "preset", "talking", None, "ff", 100, True, "crop", False,
                      "result", handle_file(str(bogus)), api_name="/animate")


def test_side_by_side_puts_the_motion_left_of_the_result(client):
    import numpy as np

    video_path, _ = client.predict([handle_file_(EXAMPLE)], "preset", "talking", None, "ff",
                                   100, True, "crop", False, "side_by_side",
                                   api_name="/animate")
    frames, _ = video.read_video(video_path, max_frames=1)
    height, width = frames[0].shape[:2]
    assert (width, height) == (512, 256)  # the landmark drawing, then the 256 px crop
    left = frames[0][:, :256].astype(int)
    # The drawing is coloured lines on black: mostly dark, with some bright pixels.
    assert np.median(left) < 20 and (left.max(axis=-1) > 120).mean() > 0.005


def handle_file_(path):
    from gradio_client import handle_file

    return handle_file(path)


def test_examples_run(client):
    """Every row of the app's gr.Examples goes through /animate."""
    import app
    from gradio_client import handle_file

    examples = app.EXAMPLES
    assert len(examples) >= 2
    for photos, *rest in examples:
        video_path, _ = client.predict([handle_file(p) for p in photos], *rest,
                                       api_name="/animate")
        assert video.probe(video_path).num_frames > 0


def test_heavy_events_share_one_concurrency_budget(served):
    """/detect and /animate draw on one pool of ``limits.concurrency`` slots (Gradio would
    otherwise give each event its own pool, and both would run at once)."""
    import app

    demo, _ = served
    groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit)
              for fn in demo.fns.values() if fn.api_name in ("detect", "adapt", "animate")}
    assert groups == {name: (app.HEAVY, "default") for name in ("detect", "adapt", "animate")}
    streams = [fn for fn in demo.fns.values() if fn.name == "live"]
    assert len(streams) == 1 and streams[0].concurrency_id == app.HEAVY
    assert streams[0].time_limit == app.LIVE_SECONDS
    queue = demo._queue
    assert queue.default_concurrency_limit == 1  # Limits().concurrency


def test_readme_front_matter_configures_the_space():
    import re

    import gradio
    from huggingface_hub import metadata_load

    readme = PROJECT_ROOT / "README.md"
    meta = metadata_load(readme)
    pinned = re.search(r"^gradio==([\w.]+)\s*$", (PROJECT_ROOT / "requirements.txt").read_text(),
                       re.MULTILINE).group(1)
    assert meta["sdk"] == "gradio"
    assert str(meta["sdk_version"]) == pinned == gradio.__version__
    assert (PROJECT_ROOT / meta["app_file"]).is_file()
    assert isinstance(meta["python_version"], str)
    assert re.search(r'^python_version: "[\d.]+"$', readme.read_text(), re.MULTILINE)
    text = readme.read_text()
    assert "## Using the Space from Python" in text and 'api_name="/animate"' in text


def test_session_files_forget_expired_files_and_delete_orphans(tmp_path):
    """Files Gradio's expiry already deleted are dropped from the book-keeping (a session that
    never ends must not grow it for ever); a release deletes only what nobody else holds."""
    import os

    import app

    cache = tmp_path / "cache"
    (cache / "a").mkdir(parents=True)
    (cache / "b").mkdir()
    expired, shared = cache / "a" / "old.jpg", cache / "b" / "shared.jpg"
    expired.write_bytes(b"old")
    shared.write_bytes(b"shared")
    files = app.SessionFiles(cache)
    files.hold("never-ends", [expired, shared])
    files.hold("other", [shared])
    expired.unlink()  # delete_cache's expiry
    files.hold("other", [])  # any later registration prunes
    assert files.held("never-ends") == [shared.resolve()]
    assert files.release("never-ends") == []  # "other" still holds it
    assert files.release("other") == [shared.resolve()]
    assert not shared.exists() and os.listdir(cache / "b") == []  # the folder stays: an
    # upload of the same content may have just created it for its own file
    assert files.held("other") == []


def test_frames_are_shown_while_a_request_runs(served, shared_data, tmp_path):
    """The page's poll gets frames before the video exists: the driving clip with its
    landmarks while it is analysed, an instant (FF) frame before fine-tuning, then the
    rendered batches."""
    from types import SimpleNamespace

    from talking_heads.gradio_adapter import Handlers
    from talking_heads.sessions import SessionFiles

    demo, _ = served
    handlers = Handlers(demo.animator, 0.4, SessionFiles(tmp_path))
    shown = []
    put = handlers.frames.put
    handlers.frames.put = lambda session, frame: (shown.append(frame.shape), put(session,
                                                                                 frame))
    request = SimpleNamespace(session_hash="s")
    no_progress = lambda fraction, desc=None: None  # noqa: E731
    clip = str(shared_data / CLIP)
    outputs = list(handlers.animate([EXAMPLE], "video", "talking", clip, "ft", 2, True, "crop",
                                    False, request=request, progress=no_progress))
    assert len(outputs) == 1 and outputs[0][0].endswith(".mp4")
    clip_frame = next(video.iter_frames(clip, max_frames=1, max_side=640)).shape
    crop = (256, 256, 3)
    # analysis (every tenth frame: 0 of 10), the FF preview, then two batches of 8 + 2
    assert shown[0] == clip_frame and shown[1:] == [crop, crop, crop]
    assert handlers.latest_frame(0, request)[1] == 0  # cleared once the video was served


def test_the_live_driver_is_kept_per_session_and_freed_with_it(served, tmp_path):
    """Webcam frames reuse one driver and avatar through their tokens; the end of the session
    drops both."""
    from types import SimpleNamespace

    import cv2

    from talking_heads.gradio_adapter import Handlers
    from talking_heads.sessions import SessionFiles

    demo, _ = served
    handlers = Handlers(demo.animator, 0.4, SessionFiles(tmp_path))
    request = SimpleNamespace(session_hash="s")
    frame = cv2.cvtColor(cv2.imread(EXAMPLE), cv2.COLOR_BGR2RGB)
    _, status, driver, kept = handlers.live(frame, [EXAMPLE], None, None, None, request)
    assert status.startswith("frame 1:") and driver and kept
    first = handlers.drivers.get("s", driver)
    _, status, driver_again, kept_again = handlers.live(frame, [EXAMPLE], None, kept, driver,
                                                         request)
    assert status.startswith("frame 2:") and (driver_again, kept_again) == (driver, kept)
    assert handlers.drivers.get("s", driver) is first
    handlers.end_session(request)
    assert len(handlers.drivers) == len(handlers.avatars) == 0
