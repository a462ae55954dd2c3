"""Photos + driving motion -> labelled H.264 mp4: the package's public entry point.

The chain, one job per module (networks -> model wrapper -> pipeline -> shells):

- ``faces``: photos in, faces checked (no face, too small, someone else), detector previews;
- ``avatar`` / ``avatar_file``: the adapted person (FF or FT) and its validated file;
- ``driving``: a preset track or a clip's landmarks -> ``Driving``; relative motion;
- ``rendering`` + ``compositing``: y(t) -> G in batches -> paste-back, label, side by side
  -> mp4 with the driving audio;
- ``animator``: ``Animator`` (the loaded model, its weights digest and limits): ``adapt``,
  ``drive``, ``animate``;
- ``live``: one webcam frame at a time; ``previews``: preset motion previews;
- ``animate_cli``: ``python -m talking_heads animate``; ``app.py``: the Gradio UI.

This module re-exports the names callers use, so ``from talking_heads.pipeline import ...``
keeps working whichever module a name lives in.
"""

from __future__ import annotations

from talking_heads.animate_cli import main
from talking_heads.animator import Adaptation, Animator
from talking_heads.avatar import Avatar, NoFaceError
from talking_heads.avatar_file import AvatarFileError
from talking_heads.compositing import MIN_CROP_OUTPUT, compose, paste_into_photo, side_by_side
from talking_heads.driving import (DEFAULT_MAX_SECONDS, Driving, driving_from_preset,
                                   driving_from_video, driving_landmarks)
from talking_heads.faces import (MAX_PHOTOS, CachedDetector, FacePreview, limit_side,
                                 load_photo, preview_faces)
from talking_heads.inputs import InputError
from talking_heads.options import (DRIVING_SHARE, AnimateOptions, AnimationResult, Progress,
                                   Timings, progress_span)

__all__ = [
    "Adaptation", "AnimateOptions", "AnimationResult", "Animator", "Avatar", "AvatarFileError",
    "CachedDetector", "DEFAULT_MAX_SECONDS", "DRIVING_SHARE", "Driving", "FacePreview",
    "InputError", "MAX_PHOTOS", "MIN_CROP_OUTPUT", "NoFaceError", "Progress", "Timings",
    "compose", "driving_from_preset", "driving_from_video", "driving_landmarks", "limit_side",
    "load_photo", "main", "paste_into_photo", "preview_faces", "progress_span", "side_by_side",
]
