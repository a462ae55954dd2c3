"""68-point facial landmark detection behind one small interface.

The paper (Sec. 4) obtains the landmark images y_i(t) from 68 iBUG points found by Bulat and
Tzimiropoulos' face-alignment network. Two backends implement the same ``LandmarkDetector``
protocol:

- ``"dlib"`` (default): dlib's HOG face detector + its 68-point shape predictor, whose model
  file ships in the ``face_recognition_models`` package. The detector runs on a downscaled copy
  of large frames; the shape predictor runs at full resolution.
- ``"face_alignment"`` (optional): the FAN network of the ``face-alignment`` package. Its
  weights are read from ``$TORCH_HOME/hub/checkpoints`` or downloaded there on first use; when
  neither works, ``get_detector`` raises ``DetectorUnavailable``. Face boxes come from the same
  dlib HOG detector (fed through face-alignment's ``detected_faces`` argument), so both backends
  agree on which face is "the largest" and on how many faces were found.

Train and drive with the same backend: the two place points slightly differently.

Thread safety: one detector is shared by every request of the app (``/detect`` and
``/animate`` can run at the same time). dlib's HOG detector and shape predictor release the
GIL and keep per-call state inside the object, so two threads calling one of them at once
crash the process; each backend therefore holds a lock around its native calls.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from talking_heads.images import to_rgb_uint8

NUM_POINTS = 68
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) image pixels
FAN_WEIGHTS_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
# SHA-256 of that file; its first 10 hex digits are the ones in the file name (torch.hub's
# convention), checked in full so that a swapped file cannot pass on a 40-bit prefix.
FAN_WEIGHTS_SHA256 = "11f355bf0693120222f5955ce3f9dc8fb5763ebb30a47d7906e509490d32e4aa"


class DetectorUnavailable(RuntimeError):
    """A landmark backend cannot run here (missing package or weights)."""


@dataclass(frozen=True)
class Detection:
    """Result of one detection: the largest face's 68 points, or an explicit "no face".

    ``points``: float32 (68, 2) image pixel (x, y), or None. ``box``: (x0, y0, x1, y1) of the
    chosen face in image pixels, or None. ``num_faces``: how many faces the detector saw.
    """

    points: np.ndarray | None
    box: Box | None
    num_faces: int

    @property
    def found(self) -> bool:
        return self.points is not None

    @classmethod
    def no_face(cls) -> "Detection":
        return cls(points=None, box=None, num_faces=0)


class LandmarkDetector(Protocol):
    name: str

    def detect(self, image_rgb: np.ndarray, near: Box | None = None) -> Detection:
        """uint8 (H, W, 3) RGB -> ``Detection`` of the largest face.

        ``near``: for video, the previous frame's ``box``. The search then starts around it
        (several times faster on large frames) and ``num_faces`` counts the faces found
        there; the whole frame is searched when that region has none. Every frame is still
        detected: nothing is carried over from the previous frame but where to look."""
        ...


def face_recognition_models_dir() -> Path:
    """Folder holding dlib's model files, found without importing the package.

    ``face_recognition_models/__init__.py`` imports ``pkg_resources``, which recent setuptools
    no longer ships; the import spec tells us where the package lives without running it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise DetectorUnavailable("package face_recognition_models is not installed")
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
    else:
        root = Path(spec.origin).parent
    return root / "models"


def _largest(boxes: list[Box]) -> int:
    areas = [(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes]
    return int(np.argmax(areas))


class DlibDetector:
    """dlib HOG face detector + 68-point shape predictor (iBUG 300-W convention)."""

    name = "dlib"

    def __init__(self, detect_max_side: int = 640, small_side: int = 400,
                 track_face: int = 100, track_margin: float = 1.25, weak_score: float = 0.3):
        """``detect_max_side``: frames are downscaled to this longer side for the HOG detector.
        ``small_side``: below this size a second pass upsamples 2x (HOG finds faces >= 80 px).
        ``track_face``, ``track_margin``: with a ``near`` box (the previous frame's face), the
        detector searches only a square of +- ``track_margin`` box sides around it, scaled so
        the face is about ``track_face`` px; if no face is there, the whole frame is searched.
        ``weak_score``: HOG boxes scoring below this are dropped when a stronger box exists
        (they are mostly texture taken for a face, e.g. on a spacesuit, and would make the app
        report "2 faces"); a weak box alone is still used.
        """
        import dlib

        model = face_recognition_models_dir() / "shape_predictor_68_face_landmarks.dat"
        if not model.is_file():
            raise DetectorUnavailable(f"dlib shape predictor not found at {model}")
        self._dlib = dlib
        self._face_detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        # One lock per native object: concurrent calls into either crash the process (see
        # the module docstring); separate locks let one thread detect while another predicts.
        self._detector_lock = threading.Lock()
        self._predictor_lock = threading.Lock()
        self.detect_max_side = detect_max_side
        self.small_side = small_side
        self.track_face = track_face
        self.track_margin = track_margin
        self.weak_score = weak_score

    def _hog(self, gray: np.ndarray, origin: tuple[int, int], scale: float,
             upsample_small: bool) -> list[Box]:
        """HOG boxes in ``gray`` resized by ``scale``, mapped back to image pixels."""
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects, scores = self._run_hog(gray, 0)
        if len(rects) == 0 and upsample_small and max(gray.shape) < self.small_side:
            rects, scores = self._run_hog(gray, 1)
        if len(rects) > 1 and max(scores) >= self.weak_score:
            rects = [r for r, score in zip(rects, scores) if score >= self.weak_score]
        ox, oy = origin
        return [(ox + r.left() / scale, oy + r.top() / scale, ox + r.right() / scale,
                 oy + r.bottom() / scale) for r in rects]

    def _run_hog(self, gray: np.ndarray, upsample: int) -> tuple[list, list[float]]:
        """dlib's HOG detector (rectangles, scores), one thread at a time.

        ``gray`` is copied to contiguous memory first: given a strided view (the region around
        a ``near`` box), dlib's answer varied from call to call, sometimes finding no face."""
        gray = np.ascontiguousarray(gray)
        with self._detector_lock:
            rects, scores, _ = self._face_detector.run(gray, upsample, 0.0)
        return list(rects), list(scores)

    def detect_boxes(self, image_rgb: np.ndarray, near: Box | None = None) -> list[Box]:
        """Face boxes (x0, y0, x1, y1) in image pixels, found on a downscaled gray copy; with
        ``near``, first (and if found, only) in the region around that box."""
        gray = cv2.cvtColor(to_rgb_uint8(image_rgb), cv2.COLOR_RGB2GRAY)
        if near is not None:
            x0, y0, x1, y1 = near
            side = max(x1 - x0, y1 - y0, 1.0)
            half = self.track_margin * side
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            left, top = max(0, int(cx - half)), max(0, int(cy - half))
            region = gray[top:int(cy + half) + 1, left:int(cx + half) + 1]
            if region.size:
                boxes = self._hog(region, (left, top), min(1.0, self.track_face / side), False)
                if boxes:
                    return boxes
        scale = min(1.0, self.detect_max_side / max(gray.shape))
        return self._hog(gray, (0, 0), scale, True)

    def points_in_box(self, image_rgb: np.ndarray, box: Box) -> np.ndarray:
        """Shape predictor at full resolution inside ``box`` -> float32 (68, 2)."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        with self._predictor_lock:
            shape = self._predictor(np.ascontiguousarray(image_rgb), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def detect(self, image_rgb: np.ndarray, near: Box | None = None) -> Detection:
        image = to_rgb_uint8(image_rgb)
        boxes = self.detect_boxes(image, near)
        if not boxes:
            return Detection.no_face()
        box = boxes[_largest(boxes)]
        return Detection(points=self.points_in_box(image, box), box=box, num_faces=len(boxes))


def fan_weights_path() -> Path:
    """Where face-alignment looks for the 2D-FAN weights: ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(FAN_WEIGHTS_URL)


def _ensure_fan_weights(download: bool) -> Path:
    path = fan_weights_path()
    if path.is_file():
        return path
    if download:
        return _download_fan_weights(path)
    raise DetectorUnavailable(f"face-alignment weights are not at {path} (download disabled)")


def _download_fan_weights(path: Path) -> Path:
    """Download the 2D-FAN weights to ``path``, accepted only with ``FAN_WEIGHTS_SHA256``.

    torch.hub downloads to a temporary file, checks the digest (a "prefix" as long as the
    whole digest) and only then moves it into place, so a wrong file never lands in the cache.
    """
    from torch.hub import download_url_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(FAN_WEIGHTS_URL, str(path), hash_prefix=FAN_WEIGHTS_SHA256,
                             progress=False)
    except OSError as error:  # URLError is an OSError
        raise DetectorUnavailable(
            f"face-alignment weights are not at {path} and could not be downloaded "
            f"({error}); use the 'dlib' backend or place the file there") from error
    except RuntimeError as error:  # torch.hub: "invalid hash value"
        raise DetectorUnavailable(
            f"the downloaded face-alignment weights failed their SHA-256 check ({error}); "
            "they were not installed") from error
    return path


class FaceAlignmentDetector:
    """face-alignment's 2D-FAN landmarks inside dlib HOG face boxes."""

    name = "face_alignment"

    def __init__(self, device: str = "cpu", download: bool = True, flip_input: bool = False):
        try:
            import face_alignment
        except ImportError as error:
            raise DetectorUnavailable("package face-alignment is not installed") from error
        _ensure_fan_weights(download)
        self._boxes = DlibDetector()  # locks its own native calls
        # face-alignment does not promise thread safety (it keeps the network and its
        # settings on the object), so FAN runs one image at a time.
        self._fan_lock = threading.Lock()
        # The "folder" detector loads nothing; boxes are always passed in as detected_faces.
        # HOG boxes are what face-alignment's own "dlib" detector option feeds FAN as well
        # (same default reference scale), so FAN sees the crops it does with that option.
        self._fan = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, flip_input=flip_input,
            face_detector="folder", compile=False)

    def detect(self, image_rgb: np.ndarray, near: Box | None = None) -> Detection:
        image = to_rgb_uint8(image_rgb)
        boxes = self._boxes.detect_boxes(image, near)
        if not boxes:
            return Detection.no_face()
        box = boxes[_largest(boxes)]
        with self._fan_lock:
            result = self._fan.get_landmarks_from_image(image, detected_faces=[np.array(box)])
        if not result:
            return Detection(points=None, box=None, num_faces=len(boxes))
        points = np.asarray(result[0], dtype=np.float32)[:, :2]  # (68, 2)
        return Detection(points=points, box=box, num_faces=len(boxes))


def get_detector(name: str = "dlib", **kwargs) -> LandmarkDetector:
    """``"dlib"`` (default) or ``"face_alignment"``; raises ``DetectorUnavailable`` if it
    cannot run here (e.g. FAN weights absent and not downloadable)."""
    backends = {"dlib": DlibDetector, "face_alignment": FaceAlignmentDetector}
    if name not in backends:
        raise ValueError(f"unknown landmark detector {name!r}; choose from {sorted(backends)}")
    return backends[name](**kwargs)
