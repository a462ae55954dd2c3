"""CSIM: identity similarity from dlib's 128-d face descriptor (Zakharov et al. 2019, Table 1).

The paper measures identity preservation with the cosine similarity of embeddings from a face
recognition network *other* than the one in its content loss. Our content loss uses a
VGGFace2 FaceNet (``talking_heads.perceptual``), so CSIM here uses dlib's ResNet descriptor
(``dlib_face_recognition_resnet_model_v1.dat``, trained on a different face corpus), fed a
chip aligned with dlib's own 68-point shape predictor.

Thread safety: dlib's detector, shape predictor and recognition network keep per-call state
inside the object and crash the process when two threads use one at once, so a
``FaceIdentity`` serialises its own native calls. Servers share one through
``shared_identity()``, which loads the model files once even when requests race to be first.
"""

from __future__ import annotations

import threading

import numpy as np

from talking_heads.images import to_rgb_uint8
from talking_heads.landmarks.detector import DetectorUnavailable, face_recognition_models_dir

Box = tuple[float, float, float, float]

# dlib's documented decision threshold: descriptors closer than 0.6 (Euclidean) are the same
# person (99.38% on LFW). Raw cosines of dlib descriptors sit high even between strangers
# (about 0.80 on the shared photos; a noise image scores about 0.83 against a face), so CSIM
# from dlib is read against the copy baseline, and the same-person rate is reported beside it.
SAME_PERSON_DISTANCE = 0.6


def same_person(u: np.ndarray, v: np.ndarray) -> bool:
    """dlib's verification rule on two 128-d descriptors."""
    return bool(np.linalg.norm(np.asarray(u) - np.asarray(v)) < SAME_PERSON_DISTANCE)


class FaceIdentity:
    """dlib face descriptor of the face inside a given box (x0, y0, x1, y1) of an image."""

    def __init__(self) -> None:
        import dlib

        models = face_recognition_models_dir()
        predictor = models / "shape_predictor_68_face_landmarks.dat"
        recogniser = models / "dlib_face_recognition_resnet_model_v1.dat"
        for path in (predictor, recogniser):
            if not path.is_file():
                raise DetectorUnavailable(f"dlib model file not found: {path}")
        self._dlib = dlib
        self._face_detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor))
        self._recogniser = dlib.face_recognition_model_v1(str(recogniser))
        # One lock for all three: a descriptor is predictor + network back to back, and
        # identity checks are rare next to rendering, so finer locks would buy nothing.
        self._lock = threading.Lock()

    def find_box(self, image_rgb: np.ndarray) -> Box | None:
        """Largest face box found by dlib's HOG detector (upsampling once), or None."""
        image = np.ascontiguousarray(to_rgb_uint8(image_rgb))
        with self._lock:
            rects = self._face_detector(image, 1)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        return (rect.left(), rect.top(), rect.right(), rect.bottom())

    def descriptor(self, image_rgb: np.ndarray, box: Box | None = None) -> np.ndarray | None:
        """128-d float64 descriptor of the face in ``box`` (found with HOG when None).

        Passing the ground-truth frame's box for a generated frame keeps CSIM defined even when
        no detector finds a face there: a broken face then scores a low CSIM instead of being
        left out (which would flatter the method). Returns None only if no box is available.
        """
        image = np.ascontiguousarray(to_rgb_uint8(image_rgb))
        if box is None:
            box = self.find_box(image)
            if box is None:
                return None
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        with self._lock:
            shape = self._predictor(image, rect)
            descriptor = self._recogniser.compute_face_descriptor(image, shape)
        return np.asarray(descriptor, dtype=np.float64)


_shared: FaceIdentity | None = None
_shared_lock = threading.Lock()


def shared_identity() -> FaceIdentity:
    """The process's one ``FaceIdentity``, created on first use.

    The lock makes concurrent first calls wait for a single instance instead of each loading
    the models (about 100 MB) and racing to store theirs."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FaceIdentity()
        return _shared
