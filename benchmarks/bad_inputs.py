"""Issue 8, bad input: what a caller of the running Space sees for each awkward upload.

Run by hand (never in CI). Starts the real app (``app.build_demo`` + ``app.serve``, the bundled
trained weights from ``checkpoints/``, the default server limits) in its own process on
localhost, builds every awkward photo and driving clip from the real photos and clips in a
temporary folder, sends each one through ``gradio_client`` (``/detect`` for photos, then
``/animate``) and records exactly what came back: the error message, or success with the notes
markdown and the video's frames, plus the seconds taken and the server's memory (VmRSS before
and after, and the peak, VmHWM, of that one request: the peak is reset before each input by
writing 5 to ``/proc/<pid>/clear_refs``). After each input it checks the server is still up.

    python benchmarks/bad_inputs.py                     # ~5-10 min on a loaded 2-core CPU
    python benchmarks/bad_inputs.py --only photo_no_face clip_no_audio
    python benchmarks/bad_inputs.py --serve             # just the server (prints its URL)

Writes ``benchmarks/results/bad_inputs.json`` and prints a markdown table. Driving motion is cut
to ``--max-seconds`` (2 s) by the app so that each request stays cheap; every request is
feed-forward ("ff") unless the input is about fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data"
EXAMPLE = PROJECT_ROOT / "examples" / "astronaut.jpg"
CLIP = "clips/sadtalker__WDA_KatieHill_000.mp4"  # 512x512, 25 fps, 8 s, AAC audio
RESULTS = PROJECT_ROOT / "benchmarks" / "results"


# --------------------------------------------------------------------------- the server

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_forever(max_seconds: float | None) -> None:
    """The app as app.main() builds it (weights: Hub -> checkpoints -> untrained), limits from
    the environment, on 127.0.0.1; prints the weights label then the URL, and serves until
    killed. A private Gradio cache so that nothing is shared with other servers."""
    import signal

    import torch

    # terminate() sends SIGTERM: exit through the ``finally`` below, which removes the cache.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is far faster under load
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="talking-heads-bench-gradio-")
    import app
    from talking_heads.limits import Limits
    from talking_heads.pipeline import Animator

    limits = Limits.from_environment()
    animator = Animator.from_environment(limits=limits)
    demo = app.build_demo(animator, max_seconds=max_seconds)
    port = _free_port()
    app.serve(demo, limits, server_name="127.0.0.1", server_port=port,
              prevent_thread_lock=True, quiet=True)
    print("weights:", animator.weights_label, *animator.source.notes, flush=True)
    print("limits:", limits.summary(), flush=True)
    print(f"http://127.0.0.1:{port}/", flush=True)
    try:
        while True:
            time.sleep(1.0)
    finally:
        demo.close()
        shutil.rmtree(os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class AppServer:
    """The app in a subprocess (``serve_forever``), with its memory read from /proc."""

    def __init__(self, env: dict[str, str] | None = None, max_seconds: float | None = None,
                 startup_s: float = 600.0) -> None:
        full_env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False",
                        HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        full_env.pop("TALKING_HEADS_REPO_ID", None)  # the bundled checkpoints/ weights
        full_env.update(env or {})
        self.log_dir = Path(tempfile.mkdtemp(prefix="talking-heads-bench-server-"))
        self.stderr_path = self.log_dir / "stderr.txt"
        command = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        if max_seconds is not None:
            command += ["--max-seconds", str(max_seconds)]
        self.started = time.time()
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr,
                                            text=True, env=full_env, cwd=PROJECT_ROOT)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                         daemon=True).start()
        deadline = time.time() + startup_s
        while not any(line.startswith("http") for line in self.lines):
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.stderr_tail()}")
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"server not up in {startup_s:.0f} s: {self.stderr_tail()}")
            time.sleep(0.2)
        self.startup_s = time.time() - self.started
        self.url = next(line.strip() for line in self.lines if line.startswith("http"))
        self.weights = next((line.strip()[len("weights: "):] for line in self.lines
                             if line.startswith("weights:")), "")
        self.limits = next((line.strip()[len("limits: "):] for line in self.lines
                            if line.startswith("limits:")), "")
        self._samples: list[tuple[float, float]] = []
        self._sampling = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mib(self) -> float | None:
        kib = _status_kib(self.pid, "VmRSS")
        return None if kib is None else round(kib / 1024, 1)

    def peak_mib(self) -> float | None:
        kib = _status_kib(self.pid, "VmHWM")
        return None if kib is None else round(kib / 1024, 1)

    def reset_peak(self) -> bool:
        """VmHWM back to the current RSS (Linux: 5 > clear_refs); False if not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def start_sampling(self, every_s: float = 0.2) -> None:
        self._samples, self._sampling = [], True

        def sample():
            start = time.perf_counter()
            while self._sampling and self.alive():
                rss = self.rss_mib()
                if rss is not None:
                    self._samples.append((round(time.perf_counter() - start, 2), rss))
                time.sleep(every_s)

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop_sampling(self) -> list[tuple[float, float]]:
        self._sampling = False
        self._sampler.join(timeout=5)
        return self._samples

    def stderr_tail(self, chars: int = 3000) -> str:
        try:
            return self.stderr_path.read_text()[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        shutil.rmtree(self.log_dir, ignore_errors=True)


def machine_facts() -> dict:
    from benchmarks.harness import cpu_model

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").is_file() \
        else []
    return {"cpu": cpu_model(), "nproc": os.cpu_count(), "loadavg": [float(x) for x in load],
            "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


# --------------------------------------------------------------------------- the inputs

def _save(image, path: Path, **kwargs) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path, **kwargs)
    return path


def _write_clip(path: Path, frames, fps: float = 25, times_ms=None, audio=None) -> Path:
    """H.264 mp4 (and AAC when ``audio``); ``times_ms`` gives each frame's own timestamp
    (variable frame rate), otherwise frames are 1/fps apart (``video.write_mp4``)."""
    import av
    import numpy as np

    from talking_heads import video

    if times_ms is None:
        return video.write_mp4(path, frames, fps, audio=audio, comment="")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, ms in zip(frames, times_ms):
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            out.pts, out.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def build_inputs(data: Path, folder: Path) -> list[dict]:
    """Every awkward input, generated into ``folder`` from real photos and a real clip.

    Each case: ``name``, ``sent`` (a description), ``photos`` (paths), ``driving`` ("preset"
    or "video"), ``video`` (path or None), ``mode``, ``steps``, ``detect`` (also call /detect).
    """
    import av
    import cv2
    import numpy as np
    from PIL import Image

    from talking_heads import video

    johns_dir = data / "photos" / "johns"
    johns = {d.name: np.asarray(Image.open(sorted(d.glob("*.jpg"))[0]).convert("RGB"))
             for d in sorted(johns_dir.iterdir()) if d.is_dir()}  # 150x150 aligned photos
    face = cv2.resize(johns["John_Simm"], (300, 300), interpolation=cv2.INTER_CUBIC)
    other = cv2.resize(johns["John_Savage"], (300, 300), interpolation=cv2.INTER_CUBIC)
    astronaut = np.asarray(Image.open(EXAMPLE).convert("RGB"))  # 512x512
    cases: list[dict] = []

    def photo_case(name, sent, photos, mode="ff", steps=10, detect=True):
        cases.append(dict(name=name, sent=sent, photos=[str(p) for p in photos],
                          driving="preset", video=None, mode=mode, steps=steps, detect=detect))

    def clip_case(name, sent, clip, driving="video"):
        cases.append(dict(name=name, sent=sent, photos=[str(EXAMPLE)], driving=driving,
                          video=None if clip is None else str(clip), mode="ff", steps=10,
                          detect=False))

    p = folder
    photo_case("photo_ok_baseline", "examples/astronaut.jpg, 512x512 JPEG", [EXAMPLE])
    photo_case("photo_no_face", "a 212x212 crop of the astronaut photo's background (no face)",
               [_save(np.ascontiguousarray(astronaut[300:512, 300:512]), p / "background.jpg",
                      quality=95)])
    small = np.zeros((300, 300, 3), np.uint8)
    small[75:225, 75:225] = johns["John_Savage"]
    photo_case("photo_several_faces", "two Johns side by side (300x600 JPEG, faces of ~100 and "
               "~200 px)", [_save(np.concatenate([small, face], axis=1), p / "two_people.jpg",
                                  quality=95)])
    photo_case("photo_tiny_face", "a John photo downscaled to 60x60 px (face < 64 px)",
               [_save(cv2.resize(johns["John_Simm"], (60, 60), interpolation=cv2.INTER_AREA),
                      p / "tiny.jpg", quality=95)])
    big = cv2.resize(face, (8000, 8000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(p / "huge_8000.jpg"), big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    photo_case("photo_8000x8000_jpeg", "a John photo upscaled to 8000x8000 JPEG (q80, "
               f"{(p / 'huge_8000.jpg').stat().st_size / 2**20:.1f} MiB)", [p / "huge_8000.jpg"])
    cv2.imwrite(str(p / "huge_8000.png"), big[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    photo_case("photo_8000x8000_png", "the same 8000x8000 as PNG "
               f"({(p / 'huge_8000.png').stat().st_size / 2**20:.1f} MiB)", [p / "huge_8000.png"])
    del big
    Image.new("L", (9500, 9000), 128).save(p / "over_pixels.png")
    photo_case("photo_over_pixel_limit", "a plain 9500x9000 gray PNG (85.5 MP > 80 MP limit, "
               f"{(p / 'over_pixels.png').stat().st_size / 2**10:.0f} KiB)",
               [p / "over_pixels.png"])
    Image.new("1", (20000, 20000), 0).save(p / "bomb.png")
    photo_case("photo_decompression_bomb", "a 20000x20000 PNG of "
               f"{(p / 'bomb.png').stat().st_size / 2**10:.0f} KiB (400 MP when decoded)",
               [p / "bomb.png"])
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    photo_case("photo_exif_rotated", "a John photo stored sideways with EXIF Orientation=6 "
               "(as phones write it)",
               [_save(np.ascontiguousarray(np.rot90(face, k=1)), p / "phone.jpg", exif=exif,
                      quality=95)])
    Image.fromarray(face).convert("L").save(p / "gray.jpg", quality=95)
    photo_case("photo_grayscale", "8-bit grayscale JPEG", [p / "gray.jpg"])
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    photo_case("photo_rgba", "RGBA PNG with a transparent corner", [_save(rgba, p / "rgba.png")])
    cv2.imwrite(str(p / "rgb16.png"), face[:, :, ::-1].astype(np.uint16) * 257)
    photo_case("photo_16bit_png", "48-bit (16 bits per channel) RGB PNG", [p / "rgb16.png"])
    Image.fromarray(face).convert("CMYK").save(p / "cmyk.jpg", quality=95)
    photo_case("photo_cmyk_jpeg", "CMYK JPEG", [p / "cmyk.jpg"])
    Image.fromarray(face).convert("P", palette=Image.Palette.ADAPTIVE).save(p / "palette.png")
    photo_case("photo_palette_png", "palette (8-bit indexed) PNG", [p / "palette.png"])
    frames = [Image.fromarray(face), Image.fromarray(other)]
    frames[0].save(p / "animated.gif", save_all=True, append_images=frames[1:], duration=500)
    photo_case("photo_animated_gif", "an animated GIF (2 frames, two people)",
               [p / "animated.gif"])
    _save(face, p / "face.webp", quality=90)
    photo_case("photo_webp", "WebP", [p / "face.webp"])
    (p / "notes.jpg").write_text("this is not a photo\n")
    photo_case("photo_text_named_jpg", "a text file named notes.jpg", [p / "notes.jpg"])
    whole = _save(face, p / "whole.jpg", quality=95).read_bytes()
    (p / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    photo_case("photo_truncated_jpeg", "the first half of a JPEG's bytes", [p / "cut.jpg"])
    (p / "empty.png").write_bytes(b"")
    photo_case("photo_empty_file", "an empty file named empty.png", [p / "empty.png"])
    photo_case("photo_good_then_truncated", "two photos: whole.jpg, then the truncated cut.jpg",
               [p / "whole.jpg", p / "cut.jpg"])
    photo_case("photos_two_people", "two photos of two different Johns (Simm, Savage)",
               [p / "whole.jpg", _save(other, p / "other.jpg", quality=95)])
    simm = sorted((johns_dir / "John_Simm").glob("*.jpg"))[:9]
    photo_case("photos_nine", "9 photos of John Simm (limit 8)", simm, detect=False)
    photo_case("photos_eight", "8 photos of John Simm (at the limit)", simm[:8], detect=False)
    photo_case("photo_ft_steps_over_limit", "mode ft with steps=900 (limit 300)",
               [p / "whole.jpg"], mode="ft", steps=900, detect=False)
    cases.append(dict(name="api_unknown_preset", sent="preset 'dancing' (not offered)",
                      photos=[str(p / "whole.jpg")], driving="preset", preset="dancing",
                      video=None, mode="ff", steps=10, detect=False))
    cases.append(dict(name="api_unknown_mode", sent="mode 'fast' (not 'ff' or 'ft')",
                      photos=[str(p / "whole.jpg")], driving="preset", video=None, mode="fast",
                      steps=10, detect=False))
    photo_case("photo_ft_steps_zero", "mode ft with steps=0 (minimum 1)",
               [p / "whole.jpg"], mode="ft", steps=0, detect=False)
    noise = np.random.default_rng(0).integers(0, 256, (4400, 4400, 3), np.uint8)
    cv2.imwrite(str(p / "noise_55mb.png"), noise, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    del noise
    photo_case("photo_over_upload_limit", "a "
               f"{(p / 'noise_55mb.png').stat().st_size / 2**20:.0f} MiB PNG (limit 50 MB per "
               "file)", [p / "noise_55mb.png"], detect=False)
    cases.append(dict(name="photo_over_upload_limit_raw_http", sent="the same 55 MiB PNG "
                      "POSTed to /gradio_api/upload directly (no client-side check)",
                      photos=[str(p / "noise_55mb.png")], driving="preset", video=None,
                      mode="ff", steps=10, detect=False, raw_upload=True))
    cases.append(dict(name="photo_none", sent="no photo at all (empty list)", photos=[],
                      driving="preset", video=None, mode="ff", steps=10, detect=False))

    # Driving clips, all from one real 8 s talking clip with audio.
    clip = data / CLIP
    audio = video.read_audio(clip, max_seconds=3.0)
    clip_frames = video.read_video(clip, max_frames=75)[0]  # (75, 512, 512, 3): 3 s at 25 fps
    clip_case("clip_ok_baseline", f"{CLIP} as published (512x512, 25 fps, 8 s, AAC)", clip)
    clip_case("clip_preset_without_upload", "driving source 'video' but no video uploaded",
              None)
    (p / "notes.mp4").write_text("not a video at all\n")
    clip_case("clip_text_named_mp4", "a text file named notes.mp4", p / "notes.mp4")
    data_bytes = clip.read_bytes()
    (p / "half.mp4").write_bytes(data_bytes[:len(data_bytes) // 2])
    clip_case("clip_truncated", "the first half of the clip's bytes (as published: index at "
              "the end)", p / "half.mp4")
    _write_clip(p / "faststart.mp4", clip_frames, 25, audio=audio)
    faststart = (p / "faststart.mp4").read_bytes()
    (p / "half_faststart.mp4").write_bytes(faststart[:len(faststart) // 2])
    clip_case("clip_truncated_faststart", "a 3 s re-encode with the index first "
              "(+faststart), cut to its first half of bytes", p / "half_faststart.mp4")
    (p / "headless.mp4").write_bytes(b"\0" * 4096 + data_bytes[4096:])
    clip_case("clip_header_zeroed", "the clip with its first 4 KiB zeroed", p / "headless.mp4")
    with av.open(str(p / "sound.m4a"), "w") as container:  # audio, no video stream
        stream = container.add_stream("aac", rate=audio.sample_rate)
        stream.layout = "stereo"
        for first in range(0, audio.samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio.samples[:2, first:first + 1024]), format="fltp",
                layout="stereo")
            chunk.sample_rate, chunk.pts = audio.sample_rate, first
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    clip_case("clip_audio_only_m4a", "an audio-only .m4a (no video stream)", p / "sound.m4a")
    clip_case("clip_no_audio", "3 s of the clip re-encoded without audio",
              _write_clip(p / "silent.mp4", clip_frames, 25))
    gaps = clip_frames.copy()
    gaps[10:35] = 0  # 1 s of black frames in the first 2 s
    clip_case("clip_frames_without_face", "3 s with audio, frames 10-34 (1 s) blacked out",
              _write_clip(p / "gaps.mp4", gaps, 25, audio=audio))
    clip_case("clip_no_face_at_all", "2 s of black frames with audio",
              _write_clip(p / "black.mp4", np.zeros_like(clip_frames[:50]), 25, audio=audio))
    times = [i * 40 for i in range(25)] + [960 + 200 * i for i in range(1, 11)]  # 25 fps, 5 fps
    clip_case("clip_variable_frame_rate", "35 frames: 1 s at 25 fps then 2 s at 5 fps "
              "(per-frame timestamps)",
              _write_clip(p / "vfr.mp4", clip_frames[:35], 25, times_ms=times))
    small_frames = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA)
                             for f in video.read_video(clip, max_frames=200)[0]])
    full_audio = video.read_audio(clip)
    long_audio = video.AudioTrack(np.tile(full_audio.samples, (1, 5)), full_audio.sample_rate)
    clip_case("clip_long_40s", "the 8 s clip looped 5x: 40 s (limit 20 s), 256x256, with audio",
              _write_clip(p / "long40.mp4", np.concatenate([small_frames] * 5), 25,
                          audio=long_audio))
    del small_frames
    huge = np.stack([cv2.resize(f, (4200, 4200), interpolation=cv2.INTER_LINEAR)
                     for f in clip_frames[:3]])
    clip_case("clip_over_resolution_limit", "3 frames of 4200x4200 (17.6 MP; limit 16.8 MP)",
              _write_clip(p / "huge4200.mp4", huge, 25))
    del huge
    hd = np.stack([np.pad(cv2.resize(f, (720, 720), interpolation=cv2.INTER_CUBIC),
                          ((0, 0), (280, 280), (0, 0))) for f in clip_frames[:50]])
    clip_case("clip_landscape_1280x720", "2 s landscape 1280x720 (the face padded left and "
              "right), with audio", _write_clip(p / "landscape.mp4", hd, 25, audio=audio))
    del hd
    clip_case("clip_portrait_288x512", "2 s portrait 288x512 (9:16 crop), with audio",
              _write_clip(p / "portrait.mp4", np.ascontiguousarray(clip_frames[:50, :, 112:400]),
                          25, audio=audio))
    return cases


# --------------------------------------------------------------------------- the calls

def _message(error: BaseException) -> str:
    text = str(error).strip() or repr(error)
    return f"{type(error).__name__}: {text}"


def run_case(client_factory, case: dict, server: "AppServer | None" = None) -> dict:
    """One case through /detect (photos) and /animate; what the caller saw. With ``server``,
    the peak RSS of the /detect call alone is recorded too (it decodes the photos)."""
    from gradio_client import handle_file

    from talking_heads import video

    client = client_factory()
    record: dict = {}
    files = [handle_file(path) for path in case["photos"]]
    if case["detect"]:
        start = time.perf_counter()
        try:
            gallery = client.predict(files, api_name="/detect")
            record["detect"] = {"outcome": "ok", "captions": [item.get("caption") for item in
                                                              gallery]}
        except Exception as error:  # noqa: BLE001 - what the caller sees is the point
            record["detect"] = {"outcome": "error", "message": _message(error)}
        record["detect"]["seconds"] = round(time.perf_counter() - start, 2)
        if server is not None:
            time.sleep(0.2)
            record["detect"]["rss_peak_mib"] = server.peak_mib()
            server.reset_peak()
    if case.get("raw_upload"):
        return raw_upload(client_factory, case)
    driving_video = handle_file(case["video"]) if case["video"] else None
    start = time.perf_counter()
    try:
        result, notes = client.predict(files, case["driving"], case.get("preset", "talking"),
                                       driving_video,
                                       case["mode"], case["steps"], True, "photo", True,
                                       api_name="/animate")
        seconds = time.perf_counter() - start
        path = result["video"] if isinstance(result, dict) else result
        info = video.probe(path)
        record.update(outcome="ok", message=notes, video={
            "frames": info.num_frames, "fps": info.fps, "size": [info.width, info.height],
            "audio": info.audio_codec})
    except Exception as error:  # noqa: BLE001
        seconds = time.perf_counter() - start
        record.update(outcome="error", message=_message(error))
    record["seconds"] = round(seconds, 2)
    try:
        client.close()
    except Exception:  # noqa: BLE001 - older clients have no close()
        pass
    return record


def raw_upload(client_factory, case: dict) -> dict:
    """POST the file straight to the server's upload route, as a caller that skips
    gradio_client's own size check would (the server must refuse it too)."""
    import httpx

    client = client_factory()
    path = Path(case["photos"][0])
    start = time.perf_counter()
    with open(path, "rb") as handle:
        response = httpx.post(client.upload_url,
                              files={"files": (path.name, handle, "image/png")}, timeout=120)
    seconds = time.perf_counter() - start
    ok = response.status_code == 200
    return {"outcome": "ok" if ok else "error", "seconds": round(seconds, 2),
            "message": f"HTTP {response.status_code}: {response.text[:300]}"}


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).replace("|", "/").split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _user_saw(record: dict) -> str:
    if record["outcome"] == "error":
        return "**error**: " + _one_line(record["message"])
    notes = [line[2:] for line in record["message"].splitlines() if line.startswith("- ")]
    # The weights label and the timing line are on every result: leave them out here.
    notes = [n for n in notes if not n.startswith("weights:") and " frames at " not in n]
    video_info = record.get("video") or {}
    head = (f"ok: {video_info.get('frames')} frames {video_info.get('size', ['?'])[0]}x"
            f"{video_info.get('size', ['?', '?'])[1]}"
            f"{', audio' if video_info.get('audio') else ', silent'}")
    return head + ("; notes: " + _one_line("; ".join(notes)) if notes else "")


def markdown_table(records: list[dict]) -> str:
    rows = ["| input | sent | /detect gallery | /animate: what the caller saw | s | server RSS "
            "before / peak (MiB) |", "|---|---|---|---|---|---|"]
    for r in records:
        detect = r.get("detect")
        if detect is None:
            gallery = "-"
        elif detect["outcome"] == "ok":
            gallery = _one_line("; ".join(c or "" for c in detect["captions"]), 160)
        else:
            gallery = "error: " + _one_line(detect["message"], 160)
        memory = f"{r.get('rss_before_mib')} / {r.get('rss_peak_mib')}"
        if not r.get("server_alive_after", True):
            memory += " **server died**"
        rows.append(f"| {r['name']} | {_one_line(r['sent'], 120)} | {gallery} | "
                    f"{_user_saw(r)} | {r['seconds']:.1f} | {memory} |")
    return "\n".join(rows)


def portable(value, folder: Path | None = None):
    """``value`` (JSON-like) with this machine's paths replaced: the project root by ".", the
    temporary inputs folder by "INPUTS_DIR" (messages and server tracebacks quote them)."""
    if isinstance(value, dict):
        return {key: portable(item, folder) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item, folder) for item in value]
    if isinstance(value, str):
        if folder is not None:
            value = value.replace(str(folder), "INPUTS_DIR")
        return value.replace(str(PROJECT_ROOT), ".")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="shared data folder (photos/johns, clips, manifest.csv)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bad_inputs.json")
    parser.add_argument("--max-seconds", type=float, default=2.0,
                        help="the app cuts driving motion to this (build_demo max_seconds)")
    parser.add_argument("--only", nargs="*", help="run only these inputs (by name)")
    parser.add_argument("--serve", action="store_true", help="internal: be the server")
    args = parser.parse_args(argv)
    if args.serve:
        serve_forever(args.max_seconds)
        return 0

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = machine_facts()
    folder = Path(tempfile.mkdtemp(prefix="talking-heads-bad-inputs-"))
    server = None
    try:
        tick = time.perf_counter()
        cases = build_inputs(args.data, folder)
        build_s = time.perf_counter() - tick
        if args.only:
            cases = [c for c in cases if c["name"] in set(args.only)]
        print(f"{len(cases)} inputs built in {build_s:.0f} s under {folder}", flush=True)
        server = AppServer(max_seconds=args.max_seconds)
        print(f"server up in {server.startup_s:.0f} s at {server.url} ({server.weights}); "
              f"RSS {server.rss_mib()} MiB", flush=True)
        from gradio_client import Client

        idle_mib = server.rss_mib()
        records = []
        for case in cases:
            if not server.alive():
                records.append({**{k: case[k] for k in ("name", "sent")}, "outcome": "skipped",
                                "message": "server not running", "seconds": 0.0})
                continue
            stderr_at = len(server.stderr_tail(10**9))
            before = server.rss_mib()
            peak_reset = server.reset_peak()
            record = run_case(lambda: Client(server.url, verbose=False), case,
                              server if peak_reset else None)
            time.sleep(0.3)
            record = {"name": case["name"], "sent": case["sent"],
                      "request": {k: (Path(v).name if k == "video" and v else v)
                                  for k, v in case.items()
                                  if k in ("driving", "preset", "video", "mode", "steps")},
                      "photos": [Path(x).name for x in case["photos"]], **record,
                      "rss_before_mib": before, "rss_after_mib": server.rss_mib(),
                      "rss_peak_mib": server.peak_mib() if peak_reset else None,
                      "server_alive_after": server.alive()}
            if record["outcome"] == "error":  # what the server logged for it, if anything
                logged = server.stderr_tail(10**9)[stderr_at:].strip()
                if logged:
                    # Paths of the machine it ran on are no part of the result.
                    logged = logged.replace(sys.prefix, "<venv>").replace(
                        str(PROJECT_ROOT), "<project>")
                    record["server_log_tail"] = logged[-1500:]
            records.append(record)
            print(f"{case['name']}: {record['outcome']} in {record['seconds']:.1f} s, RSS "
                  f"{before} -> {record['rss_after_mib']} (peak {record['rss_peak_mib']}) MiB: "
                  f"{_one_line(record['message'], 200)}", flush=True)
        result = {
            "what": "issue 8: each awkward input sent to the running Space through "
                    "gradio_client, and what came back",
            "started": started, "finished": machine_facts(), "inputs_built_s": round(build_s, 1),
            "server": {"weights": server.weights, "limits": server.limits,
                       "max_driving_seconds_app": args.max_seconds,
                       "startup_s": round(server.startup_s, 1), "idle_rss_mib": idle_mib,
                       "rss_end_mib": server.rss_mib(), "alive_at_end": server.alive(),
                       "peak_rss_whole_run_note": "VmHWM is reset before each input "
                                                  "and again between its /detect and /animate "
                                                  "calls: detect.rss_peak_mib is the /detect "
                                                  "call's peak, rss_peak_mib the /animate "
                                                  "call's"},
            "torch_threads_server": 1,
            "records": records,
        }
        if not server.alive():
            result["server"]["stderr_tail"] = server.stderr_tail()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = portable(result, folder)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result["records"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
