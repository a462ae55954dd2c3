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


def test_every_public_event_has_an_api_name(served, client):
    demo, _ = served
    for dependency in demo.config["dependencies"]:
        if dependency.get("api_visibility", "public") == "public":
            assert dependency["api_name"], dependency
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/animate", "/detect"}
    assert not api["unnamed_endpoints"]


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
              for fn in demo.fns.values() if fn.api_name in ("detect", "animate")}
    assert groups == {"detect": (app.HEAVY, "default"), "animate": (app.HEAVY, "default")}
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
    assert not shared.exists() and not (cache / "b").exists()
    assert files.held("other") == []
