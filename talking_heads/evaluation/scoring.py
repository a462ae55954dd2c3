"""Per-frame scores of a generated crop against its ground truth (paper Table 1 + ours).

``Scorer`` bundles the networks the metrics need: the project's landmark detector (landmark
error and the face-found rate on generated frames), dlib's face descriptor (CSIM) and,
when available, a VGG feature net (perceptual distance). The ground truth of each evaluated
frame is analysed once (``Scorer.reference``) and reused for every method and every T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from talking_heads.evaluation.identity import Box, FaceIdentity, same_person
from talking_heads.evaluation.metrics import cosine_similarity, landmark_error, psnr, ssim
from talking_heads.landmarks.detector import LandmarkDetector

NAN = float("nan")


class FeatureNet(Protocol):
    """Perceptual feature extractor: uint8 (B, S, S, 3) -> list of activations (B, C, h, w)."""

    name: str

    def features(self, images: np.ndarray) -> list: ...


@dataclass(frozen=True)
class FrameScores:
    """Scores of one generated frame x-hat against its ground truth x."""

    ssim: float            # higher is better
    psnr: float            # dB, higher is better
    perceptual: float      # mean L1 of VGG activations, lower is better; NaN if no VGG net
    csim: float            # cosine of dlib descriptors, higher is better; NaN if no face box
    landmark_error: float  # NME (outer-eye normalised) of the detector on x-hat; NaN if no face
    face_found: bool       # the project's detector finds a face in x-hat
    same_identity: float   # 1.0 if dlib's descriptor distance < 0.6 (dlib's threshold), else 0
    descriptor: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Reference:
    """The analysed ground-truth crop: landmarks from the clip's detection, moved to the crop."""

    image: np.ndarray                   # uint8 (S, S, 3)
    points: np.ndarray                  # float32 (68, 2) crop pixels
    box: Box                            # face box on the crop, for CSIM's descriptor
    descriptor: np.ndarray | None       # dlib 128-d
    features: list | None = field(default=None, repr=False)  # VGG activations of x


def _box_from_points(points: np.ndarray) -> Box:
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))


def perceptual_distance(a: list, b: list) -> float:
    """Mean over layers of the mean absolute difference of activations (L_CNT-style, unweighted)."""
    return float(np.mean([float((x - y).abs().mean()) for x, y in zip(a, b)]))


class Scorer:
    """Computes ``FrameScores``; ``memo`` keys let repeated candidates (copy) be analysed once."""

    def __init__(self, detector: LandmarkDetector, identity: FaceIdentity | None = None,
                 feature_net: FeatureNet | None = None) -> None:
        self.detector = detector
        self.identity = identity if identity is not None else FaceIdentity()
        self.feature_net = feature_net
        self._memo: dict = {}

    def clear_memo(self) -> None:
        self._memo.clear()

    def reference(self, image: np.ndarray, points: np.ndarray) -> Reference:
        """Analyse a ground-truth crop once: its face box and descriptor (and VGG features)."""
        detection = self.detector.detect(image)
        box = detection.box if detection.found else _box_from_points(points)
        features = None if self.feature_net is None else self.feature_net.features(image[None])
        return Reference(image=image, points=np.asarray(points, np.float32), box=box,
                         descriptor=self.identity.descriptor(image, box), features=features)

    def _analyse(self, image: np.ndarray, fallback_box: Box):
        detection = self.detector.detect(image)
        box = detection.box if detection.found else fallback_box
        features = None if self.feature_net is None else self.feature_net.features(image[None])
        return detection, self.identity.descriptor(image, box), features

    def score(self, image: np.ndarray, reference: Reference, memo_key=None) -> FrameScores:
        """Scores of the generated crop ``image`` against ``reference``."""
        if memo_key is not None and memo_key in self._memo:
            detection, descriptor, features = self._memo[memo_key]
        else:
            detection, descriptor, features = self._analyse(image, reference.box)
            if memo_key is not None:
                self._memo[memo_key] = (detection, descriptor, features)
        csim = same = NAN
        if descriptor is not None and reference.descriptor is not None:
            csim = cosine_similarity(descriptor, reference.descriptor)
            same = float(same_person(descriptor, reference.descriptor))
        error = landmark_error(detection.points, reference.points) if detection.found else NAN
        perceptual = NAN
        if features is not None and reference.features is not None:
            perceptual = perceptual_distance(features, reference.features)
        return FrameScores(ssim=ssim(image, reference.image), psnr=psnr(image, reference.image),
                           perceptual=perceptual, csim=csim, landmark_error=error,
                           face_found=bool(detection.found), same_identity=same,
                           descriptor=descriptor)


def detector_scores(reference: Reference, detector: LandmarkDetector) -> FrameScores:
    """The detector's own noise floor: it re-run on the ground-truth crop vs the clip's points."""
    detection = detector.detect(reference.image)
    error = landmark_error(detection.points, reference.points) if detection.found else NAN
    return FrameScores(ssim=NAN, psnr=NAN, perceptual=NAN, csim=NAN, landmark_error=error,
                       face_found=bool(detection.found), same_identity=NAN,
                       descriptor=reference.descriptor)


MetricFn = Callable[[list[FrameScores]], float]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else NAN


SUMMARY: dict[str, MetricFn] = {
    "ssim": lambda s: _mean([x.ssim for x in s]),
    "psnr": lambda s: _mean([x.psnr for x in s]),
    "perceptual": lambda s: _mean([x.perceptual for x in s]),
    "csim": lambda s: _mean([x.csim for x in s]),
    "landmark_error": lambda s: _mean([x.landmark_error for x in s]),
    "same_identity": lambda s: _mean([x.same_identity for x in s]),
    "face_found": lambda s: float(np.mean([x.face_found for x in s])) if s else NAN,
}


def summarize(scores: list[FrameScores]) -> dict[str, float]:
    """Means over frames (landmark error over frames with a face found) plus the count."""
    summary = {name: fn(scores) for name, fn in SUMMARY.items()}
    summary["frames"] = len(scores)
    return summary
