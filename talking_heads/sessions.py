"""What the Space keeps per browser session: files to delete when it ends, the adapted person
(so another motion needs no new adaptation) and the live driver, and the latest frame of a
running render."""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

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


T = TypeVar("T")


class SessionObjects(Generic[T]):
    """Heavy per-session objects (the adapted person, the live driver), kept by the app rather
    than in a ``gr.State``: once a session has closed, Gradio keeps its State values for an
    hour (``STATE_TTL_WHEN_CLOSED`` in ``gradio/state_holder.py``) whatever ``time_to_live``
    says, and an avatar holds its photos, crops and, after fine-tuning, a copy of G.

    The session's ``gr.State`` holds only the small token ``put`` returns; ``get`` answers only
    for that token, so a State reset to None (a new person, a new reference frame) finds
    nothing. An object goes when its session ends (``release``, from the app's unload
    handler), or, for a session that never ends (a client that never closes), once nothing
    used it for ``time_to_live_s``: that is checked at each ``put``."""

    def __init__(self, time_to_live_s: float, clock: Callable[[], float] = time.monotonic):
        self.time_to_live_s = time_to_live_s
        self._clock = clock
        self._objects: dict[str, tuple[str, T, float]] = {}  # session -> (token, object, used)
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()

    def put(self, session: str | None, value: T | None) -> str | None:
        """Keep ``value`` as the session's object; returns the token for its ``gr.State``
        (None, and nothing kept, without a session or a value)."""
        if not session or value is None:
            return None
        with self._lock:
            now = self._clock()
            self._drop_unused(now)
            token, kept, _ = self._objects.get(session, (None, None, 0.0))
            if kept is not value:
                token = str(next(self._tokens))
            self._objects[session] = (token, value, now)
            return token

    def get(self, session: str | None, token: str | None) -> T | None:
        """The session's object if ``token`` is the one ``put`` gave for it, else None."""
        if not session or not token:
            return None
        with self._lock:
            entry = self._objects.get(session)
            if entry is None or entry[0] != token:
                return None
            self._objects[session] = (token, entry[1], self._clock())
            return entry[1]

    def release(self, session: str | None) -> None:
        """The session ended: drop its object."""
        with self._lock:
            self._objects.pop(session or "", None)

    def __contains__(self, session: str) -> bool:
        with self._lock:
            return session in self._objects

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def _drop_unused(self, now: float) -> None:
        for session in [session for session, (_, _, used) in self._objects.items()
                        if now - used > self.time_to_live_s]:
            del self._objects[session]


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

    Gradio stores files by content (``<cache>/<hash>/<name>``), so two sessions that upload
    the same photo share one path: it goes when the last session holding it ends. Counting
    holders is not enough, though: a session holds its uploads only once its handler runs,
    and a new session may already have uploaded the same photo, replacing the file at that
    path, when an old one ends. So each ``hold`` records which file it saw (``_identity``:
    device, inode, modification time), and a file is deleted only if it is still that very
    file: an upload replaces it with a new inode (written aside, renamed into place), and
    ``save_file_to_cache`` touches a copy it hands out again. A replaced file is left to
    ``keep_files_s``. Files outside the cache folder and the app's own examples
    (``protected``, compared by content) are never deleted; nor are the hash folders, which
    a concurrent upload may have just created for its file.
    """

    def __init__(self, cache_dir: str | Path, protected: list[str] = ()) -> None:
        self.cache_dir = Path(cache_dir).resolve()
        self._protected = {sha256(Path(path)) for path in protected} - {None}
        self._holders: dict[Path, set[str]] = {}
        self._seen: dict[Path, tuple[int, int, int]] = {}  # the file each path was when held
        self._lock = threading.Lock()

    def hold(self, session: str | None, paths) -> None:
        """Remember that ``session`` holds ``paths`` (those outside the cache are ignored)."""
        if not session:  # a raw REST call without a session: the expiry deletes its files
            return
        with self._lock:
            self._forget_expired()
            for path in paths:
                resolved = Path(path).resolve()
                if not resolved.is_relative_to(self.cache_dir) or resolved == self.cache_dir:
                    continue
                seen = _identity(resolved)
                if seen is None:  # already gone
                    continue
                self._holders.setdefault(resolved, set()).add(session)
                self._seen[resolved] = seen

    def held(self, session: str) -> list[Path]:
        with self._lock:
            return [path for path, sessions in self._holders.items() if session in sessions]

    def release(self, session: str | None) -> list[Path]:
        """The session ended: delete the files no other session holds, if nobody has put
        another copy there since they were held; returns the deleted ones.

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
                    if self._delete(path, self._seen.pop(path)):
                        deleted.append(path)
            return deleted

    def _forget_expired(self) -> None:
        """Drop files that are gone (``delete_cache`` expired them), so that sessions which
        never end, e.g. a client that never closes, do not grow ``_holders`` for ever."""
        for path in [path for path in self._holders if not path.exists()]:
            del self._holders[path]
            del self._seen[path]

    def _delete(self, path: Path, seen: tuple[int, int, int]) -> bool:
        """Delete ``path`` if it is still the file that was held (``seen``), unless it is
        protected. It is first renamed aside (atomic), then checked: an upload that replaced
        it just before cannot be deleted between the check and the unlink, and is put back."""
        if sha256(path) in self._protected:
            return False
        aside = path.with_name(f".{secrets.token_hex(8)}.deleting")
        try:
            os.rename(path, aside)
        except OSError:  # gone already (expired), or not ours to move
            return False
        if _identity(aside) == seen:
            aside.unlink(missing_ok=True)
            return True
        try:  # another session's copy (same content): back in place, unless a newer one is
            os.link(aside, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links here: move it back instead
            os.replace(aside, path)
        aside.unlink(missing_ok=True)
        return False


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is now (device, inode, modification time), None if none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns
