"""One long-lived thread for a server's model work.

PyTorch runs its CPU kernels on an OpenMP team that belongs to the calling thread. GNU
OpenMP counts the team threads of every thread that ever ran a parallel kernel; once they
outnumber the cores (on 2 cores: the server's main thread that loaded the model, plus the
worker thread of a request), it stops letting idle team threads spin between kernels, and
every one of the thousands of small kernels of a fine-tuning step pays for waking them.
Measured on 2 cores: a FaceNet forward at batch one took 34 ms on the main thread and 85 ms
on a second thread; 20 fine-tuning steps took 8.4 s and 17.1 s.

A threaded server (the Gradio app) therefore runs all its torch work through ``run`` (or
functions decorated with ``on_compute_thread``), which hands the call to one thread, always
the same, and waits for it. Calls are serialised, which the app's single heavy-work slot does
anyway. The caller's context variables travel with the call (Gradio's progress bar reads
them). Command-line tools, which work on their main thread, do not need it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")
THREAD_NAME = "talking-heads-compute"


class SingleThread:
    """One worker thread, always the same, that runs what is submitted to it in order, each
    call in a copy of the submitting thread's context. Made afresh after a fork (the child
    has no copy of the parent's thread)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid: int | None = None

    def _get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
                self._pid = os.getpid()
            return self._executor

    def is_current(self) -> bool:
        return threading.current_thread().name.startswith(self.name)

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        context = contextvars.copy_context()
        return self._get().submit(context.run, fn, *args, **kwargs)

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` on the thread; its result or exception comes back here.
        Called from the thread itself, it runs inline (a nested call cannot wait on itself)."""
        if self.is_current():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()


COMPUTE = SingleThread(THREAD_NAME)  # the server's model work
run = COMPUTE.run
on_the_compute_thread = COMPUTE.is_current


def on_compute_thread(fn: Callable) -> Callable:
    """Decorator: every call of ``fn`` runs on the compute thread. A generator function stays
    a generator function (Gradio streams it): each step of it runs there, and closing it
    early closes it there too."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stepped(*args, **kwargs):
            generator = run(fn, *args, **kwargs)
            done = False
            try:
                while True:
                    try:
                        item = run(next, generator)
                    except StopIteration:
                        done = True
                        return
                    yield item
            finally:
                if not done:
                    run(generator.close)
        return stepped

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run(fn, *args, **kwargs)
    return wrapper
