"""The compute thread: one thread runs every call handed to it, with the caller's context."""

from __future__ import annotations

import contextvars
import inspect
import threading

import pytest

from talking_heads import compute_thread
from talking_heads.compute_thread import on_compute_thread, run

REQUEST = contextvars.ContextVar("request", default=None)


def _where() -> tuple[int, str | None]:
    return threading.get_ident(), REQUEST.get()


def test_calls_from_many_threads_run_on_one_thread_with_their_context():
    seen: list[tuple[int, str | None]] = []

    def caller(name: str) -> None:
        REQUEST.set(name)
        seen.append(run(_where))

    callers = [threading.Thread(target=caller, args=(f"r{i}",)) for i in range(4)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join()
    assert len({ident for ident, _ in seen}) == 1
    assert seen[0][0] not in {t.ident for t in callers} | {threading.get_ident()}
    assert sorted(name for _, name in seen) == ["r0", "r1", "r2", "r3"]


def test_results_exceptions_and_nested_calls():
    assert run(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(KeyError, match="missing"):
        run(lambda: {}["missing"])
    # A call made from the compute thread runs inline instead of waiting on itself.
    inner, outer = run(lambda: (run(_where)[0], threading.get_ident()))
    assert inner == outer


def test_a_decorated_generator_steps_and_closes_on_the_compute_thread():
    steps, closed = [], []

    @on_compute_thread
    def frames(count: int):
        try:
            for i in range(count):
                steps.append(compute_thread.on_the_compute_thread())
                yield i
        finally:
            closed.append(compute_thread.on_the_compute_thread())

    assert inspect.isgeneratorfunction(frames)  # Gradio streams generator functions
    assert list(frames(3)) == [0, 1, 2] and steps == [True] * 3 and closed == [True]
    stream = frames(10)
    assert next(stream) == 0
    stream.close()  # a client went away: the generator's cleanup runs, on the compute thread
    assert closed == [True, True]
    assert not compute_thread.on_the_compute_thread()


def test_the_apps_model_work_is_routed_to_the_compute_thread():
    from talking_heads.gradio_adapter import Handlers

    for name in ("detect", "adapt", "animate", "download", "live"):
        method = getattr(Handlers, name)
        assert inspect.unwrap(method) is not method, name
    assert inspect.isgeneratorfunction(Handlers.animate)
    assert "progress" in inspect.signature(Handlers.animate).parameters
