"""What the Space keeps per browser session: files to delete when it ends, the adapted person
(so another motion needs no new adaptation), and the latest frame of a running render."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talking_heads.avatar import Avatar


def sha256(path: str | Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


@dataclass
class KeptAvatar:
    """The session's adapted person and what it was made from (``key``)."""

    key: str
    avatar: Avatar
    description: str              # e.g. "fine-tuned (100 steps) on 2 photos"
    file: str | None = None       # its avatar file in Gradio's cache, once written


def photos_key(paths: list[str], mode: str, steps: int) -> str:
    """Same photo contents (in order), mode and FT steps -> same key."""
    digests = ",".join(sha256(path) or path for path in paths)
    return f"photos:{digests}:{mode}:{steps if mode == 'ft' else 0}"


def same_person(kept: "KeptAvatar | None", paths: list[str], avatar_file: str | None) -> bool:
    """Whether ``kept`` was made from these photos (in any mode) or this avatar file."""
    if kept is None:
        return False
    if avatar_file:
        return kept.key == file_key(avatar_file)
    return bool(paths) and kept.key.startswith(photos_key(paths, "ff", 0).rsplit(":", 2)[0] + ":")


def file_key(path: str) -> str:
    return f"file:{sha256(path) or path}"


def describe(avatar: Avatar) -> str:
    photos = len(avatar.sources.photos)
    if avatar.mode == "ft":
        return f"fine-tuned ({avatar.info.get('steps', '?')} steps) on {photos} photo(s)"
    return f"instant (feed-forward) from {photos} photo(s)"


class LatestFrames:
    """The newest frame of each session's running request, for the page to poll."""

    def __init__(self) -> None:
        self._frames: dict[str, tuple[int, np.ndarray]] = {}
        self._lock = threading.Lock()

    def put(self, session: str | None, frame: np.ndarray) -> None:
        if session:
            with self._lock:
                count = self._frames.get(session, (0, None))[0] + 1
                self._frames[session] = (count, frame)

    def take(self, session: str | None, seen: int) -> tuple[int, np.ndarray | None]:
        """(count, frame) when there is a frame newer than ``seen``, else (seen, None)."""
        with self._lock:
            count, frame = self._frames.get(session or "", (0, None))
        return (count, frame) if count > seen else (seen, None)

    def clear(self, session: str | None) -> None:
        with self._lock:
            self._frames.pop(session or "", None)


class SessionFiles:
    """The files in Gradio's cache that each session uploaded or was served, so they can be
    deleted as soon as the session ends (the tab is closed, or a ``gradio_client`` closes)
    rather than only when ``keep_files_s`` expires, which stays the backstop.

    Gradio stores files by content, so two sessions uploading the same photo share one file:
    it goes when the last of them ends. Files outside the cache folder and the app's own
    examples (``protected``, compared by content) are never deleted.
    """

    def __init__(self, cache_dir: str | Path, protected: list[str] = ()) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self._protected = {sha256(Path(path)) for path in protected} - {None}
        self._holders: dict[Path, set[str]] = {}
        self._lock = threading.Lock()

    def hold(self, session: str | None, paths) -> None:
        """Remember that ``session`` holds ``paths`` (those outside the cache are ignored)."""
        if not session:  # a raw REST call without a session: the expiry deletes its files
            return
        with self._lock:
            self._forget_expired()
            for path in paths:
                resolved = Path(path).resolve()
                if resolved.is_relative_to(self.cache_dir) and resolved != self.cache_dir:
                    self._holders.setdefault(resolved, set()).add(session)

    def held(self, session: str) -> list[Path]:
        with self._lock:
            return [path for path, sessions in self._holders.items() if session in sessions]

    def release(self, session: str | None) -> list[Path]:
        """The session ended: delete the files no other session holds; returns them.

        Deleting under the lock means no other session can register a file between the
        check that nobody holds it and its deletion."""
        if not session:
            return []
        with self._lock:
            deleted = []
            for path, sessions in list(self._holders.items()):
                sessions.discard(session)
                if not sessions:
                    del self._holders[path]
                    if self._delete(path):
                        deleted.append(path)
            return deleted

    def _forget_expired(self) -> None:
        """Drop files that are gone (``delete_cache`` expired them), so that sessions which
        never end, e.g. a client that never closes, do not grow ``_holders`` for ever."""
        for path in [path for path in self._holders if not path.exists()]:
            del self._holders[path]

    def _delete(self, path: Path) -> bool:
        """Delete an orphaned file unless it is protected or already gone."""
        if sha256(path) in self._protected or not path.is_file():
            return False
        path.unlink(missing_ok=True)
        try:  # Gradio's per-file folder, named by the content hash
            if path.parent != self.cache_dir:
                path.parent.rmdir()
        except OSError:
            pass  # not empty: another file with the same content hash
        return True
