"""The shared worker pool."""

import threading

import pytest

from segmentkit.parallel import in_background, thread_map, usable_cores


def test_results_keep_the_input_order():
    assert thread_map(lambda a, b: a * b, range(20), range(20)) == [i * i for i in range(20)]


def test_calls_run_on_worker_threads_when_there_are_several():
    if usable_cores() < 2:
        pytest.skip("one core: calls run inline")
    names = thread_map(lambda _: threading.current_thread().name, range(4))
    assert all(name.startswith("segmentkit") for name in names)


def test_a_single_call_runs_inline():
    assert thread_map(lambda _: threading.current_thread().name, [0]) == [
        threading.current_thread().name
    ]


def test_errors_propagate():
    def fail(value):
        if value == 3:
            raise ValueError("bad value 3")
        return value

    with pytest.raises(ValueError, match="bad value 3"):
        thread_map(fail, range(6))


def test_unequal_inputs_are_refused():
    with pytest.raises(ValueError):
        thread_map(pow, [1, 2], [1])


def test_in_background_runs_on_a_worker_and_returns_a_future():
    if usable_cores() < 2:
        pytest.skip("one core: the call runs inline")
    future = in_background(lambda: threading.current_thread().name)
    assert future.result().startswith("segmentkit")


def test_in_background_runs_inline_on_one_core(monkeypatch):
    monkeypatch.setattr("segmentkit.parallel.usable_cores", lambda: 1)
    future = in_background(lambda: threading.current_thread().name)
    assert future.done() and future.result() == threading.current_thread().name


def test_in_background_raises_the_error_from_result(monkeypatch):
    def fail():
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        in_background(fail).result()
    monkeypatch.setattr("segmentkit.parallel.usable_cores", lambda: 1)
    with pytest.raises(ValueError, match="bad value"):
        in_background(fail).result()
