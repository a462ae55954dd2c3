"""What a user notices first: the bundled default model keeps the person in instant mode.

FF (no fine-tuning) from one photo of a dev identity (never trained on), driven by a short real
clip of another dev identity; dlib's face descriptor (a network the model never trained with)
must call the output the same person as the photo in most frames. Holds by construction of
the warp design (the output samples the photo's own pixels), not by a lucky draw: no random
model is involved, only the committed weights and real inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from talking_heads import pipeline, video
from talking_heads.evaluation.identity import FaceIdentity, same_person

PHOTO_CLIP = "clips/dpe__s.mp4"                # dev identity dpe_s: its first frame is the photo
DRIVING_CLIP = "clips/liveportrait__d12.mp4"   # dev identity lp_d12: the motion

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_instant_mode_keeps_the_person_on_the_bundled_weights(shared_data, tmp_path,
                                                              monkeypatch):
    for name in ("TALKING_HEADS_REPO_ID", "TALKING_HEADS_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    animator = pipeline.Animator.from_environment(device="cpu")
    assert animator.source.kind == "bundled", animator.source.label
    photo = next(iter(video.iter_frames(shared_data / PHOTO_CLIP, max_frames=1)))
    driving = pipeline.driving_from_video(shared_data / DRIVING_CLIP, animator.detector,
                                          max_seconds=1.2)
    options = pipeline.AnimateOptions(mode="ff", paste_back=False, label=False)
    result = animator.animate([photo], driving, tmp_path / "ff.mp4", options)
    frames = list(video.iter_frames(result.path))
    assert len(frames) == len(driving.points) >= 25
    identity = FaceIdentity()
    reference = identity.descriptor(photo)
    assert reference is not None
    verdicts = []
    for frame in frames:
        descriptor = identity.descriptor(frame)
        verdicts.append(descriptor is not None and same_person(descriptor, reference))
    kept = float(np.mean(verdicts))
    assert kept > 0.5, f"dlib kept the person in {kept:.0%} of frames"
    # The motion is the driver's, not a still: the mouth region changes over the clip.
    assert np.abs(frames[0].astype(int) - frames[len(frames) // 2].astype(int)).mean() > 0.5
