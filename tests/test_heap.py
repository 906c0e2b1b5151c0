"""Large buffers reused from the heap during an evaluation (sareval.evaluator.heap)."""

from __future__ import annotations

import ctypes
import resource
import threading

import pytest

from sareval.evaluator import heap

needs_glibc = pytest.mark.skipif(heap.glibc() is None, reason="not glibc")
BLOCK = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB)


def faults_of_a_fresh_block() -> int:
    """Minor page faults taken by a BLOCK-byte ``malloc``, written once, then freed (glibc
    itself: numpy asks the kernel for huge pages on large arrays, which hides the faults)."""
    libc = heap.glibc()
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(BLOCK)
    ctypes.memset(block, 1, BLOCK)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    libc.free(block)
    return after - before


@needs_glibc
def test_inside_the_block_a_freed_large_buffer_is_reused(monkeypatch) -> None:
    """Inside: the second 64 MiB buffer reuses the first's pages (almost no faults). After:
    a 64 MiB buffer is mapped afresh each time (glibc's own behaviour, restored), and the
    heap kept inside went back to the system."""
    for name in (*heap.USER_SETTINGS, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    pages = BLOCK // resource.getpagesize()
    with heap.reused_heap():
        faults_of_a_fresh_block()
        assert faults_of_a_fresh_block() < pages // 10
    faults_of_a_fresh_block()
    assert faults_of_a_fresh_block() > pages // 2


@needs_glibc
def test_nested_blocks_restore_once_at_the_outermost(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(heap, "_set", lambda m, t: calls.append((m, t)))
    for name in (*heap.USER_SETTINGS, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    with heap.reused_heap():
        with heap.reused_heap():
            pass
        assert calls == [(heap.EVALUATION_MMAP_THRESHOLD, heap.EVALUATION_TRIM_THRESHOLD)]
    assert calls[1:] == [(heap.AFTER_MMAP_THRESHOLD, heap.AFTER_TRIM_THRESHOLD)]
    with pytest.raises(RuntimeError), heap.reused_heap():
        raise RuntimeError("restored on errors too")
    assert calls[-1] == (heap.AFTER_MMAP_THRESHOLD, heap.AFTER_TRIM_THRESHOLD)
    assert heap._depth == 0


USERS_OWN = [
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
]


@pytest.mark.parametrize("env", USERS_OWN)
def test_the_users_own_tuning_and_other_threads_are_left_alone(monkeypatch, env) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(heap, "_set", lambda m, t: calls.append((m, t)))
    monkeypatch.setenv(*env)
    with heap.reused_heap():
        pass
    monkeypatch.delenv(env[0])
    for name in (*heap.USER_SETTINGS, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    seen: list[bool] = []
    worker = threading.Thread(target=lambda: seen.append(heap.applies()))
    worker.start()
    worker.join()
    assert calls == [] and seen == [False]
