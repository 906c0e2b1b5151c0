"""A reader thread that streams a subset's batches through a bounded queue.

``BatchReader(store, subset, start, stop, batch_size, ...)`` runs :meth:`Store.iter_batches`
(the one batch reader: positions ``[start, stop)`` in order, ``s2`` from the subset's optical
source, readahead hints) in a thread, into a ring of preallocated buffers, and puts the batches
on a ``queue.Queue(maxsize=queue_size)``.
Memory is ``(queue_size + 3) x batch`` whatever the subset size: at most ``queue_size`` batches
wait, one is being filled, one is in use by the consumer and one may still be in flight to a
device (asynchronous copies from pinned buffers; the torch backend waits for the previous copy
before it starts the next). ``pinned=True`` allocates page-locked buffers (CUDA only).
The kernel is asked to load the rows ``readahead`` batches ahead in the background
(:meth:`Store.prefetch_ahead`), so a store that is not in the page cache reads at more of the
disk's bandwidth.

Iterate over the reader to get ``(batch, extra)``; ``extra`` is what the optional ``prepare``
callback returned for that batch (run in the reader thread, e.g. reading permutation partners).
Errors in the reader thread are re-raised in the consumer. :meth:`close` (also on Ctrl-C or any
error, via the context manager) stops the thread and joins it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from sareval.store import Batch, Store, Subset

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class BatchReader:
    """Prefetching batch iterator over subset positions (see module docstring)."""

    def __init__(
        self,
        store: Store,
        subset: Subset,
        start: int,
        stop: int,
        batch_size: int,
        *,
        sensors: Sequence[str],
        label_sets: Sequence[str] = (),
        queue_size: int = 2,
        pinned: bool = False,
        prepare: Callable[[Batch], Any] | None = None,
        readahead: int = 2,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.store, self.subset = store, subset
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.sensors, self.label_sets = tuple(sensors), tuple(label_sets)
        self.prepare, self.readahead = prepare, readahead
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.stopping = threading.Event()
        n_buffers = queue_size + 3
        rows = min(batch_size, max(stop - start, 1))
        self.buffers = [self._allocate(rows, pinned) for _ in range(n_buffers)]
        self.thread = threading.Thread(target=self._read, name="sareval-reader", daemon=True)
        self.thread.start()

    def _allocate(self, rows: int, pinned: bool) -> dict[str, np.ndarray]:
        out = {}
        for sensor in self.sensors:
            sample_shape, dtype = self.store.image_spec(self.subset, sensor)
            shape = (rows, *sample_shape)
            if pinned:
                import torch

                t_dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
                out[sensor] = torch.empty(shape, dtype=t_dtype, pin_memory=True).numpy()
            else:
                out[sensor] = np.empty(shape, dtype=dtype)
        return out

    def _put(self, item: Any) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            batches = self.store.iter_batches(
                self.subset, self.batch_size, start=self.start, stop=self.stop,
                sensors=self.sensors, label_sets=self.label_sets, readahead=self.readahead,
                buffers=self.buffers,
            )  # fmt: skip
            for batch in batches:
                if self.stopping.is_set():
                    return
                extra = self.prepare(batch) if self.prepare is not None else None
                if not self._put((batch, extra)):
                    return
            self._put(_DONE)
        except BaseException as e:  # handed to the consumer
            self._put(_Failure(e))

    def __iter__(self) -> Iterator[tuple[Batch, Any]]:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop the reader thread (it may be blocked on a full queue) and wait for it."""
        self.stopping.set()
        while self.thread.is_alive():
            try:
                while True:
                    self.queue.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(timeout=0.1)

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
