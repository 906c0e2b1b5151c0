"""The parallel preprocess loop: worker processes read row blocks, the main process writes them.

::

    items (one per store row, in store order) --split--> blocks of ``block_rows``
    pool of ``workers`` processes: read_block(items of a block) -> RowBlock   (GeoTIFF reads,
        resampling, labels, cloud cover)
    main process: takes the blocks back IN ORDER (at most 2 x workers in flight, so memory is
        bounded) and writes each through StoreWriter.write_rows

Resume: :class:`~sareval.store.StoreWriter` reopens ``<out>.partial`` when the job's
configuration matches; its rows are re-hashed (:meth:`StoreWriter.verify_written`) and the loop
continues at the first row not safely on disk. Ctrl-C or a kill leaves only the ``.partial``;
a worker's :class:`~sareval.errors.InputFileError` stops the job with that message (the rows
done so far stay in the ``.partial`` so that a re-run after fixing the file resumes). A full
disk stops the job before HDF5 fails (:func:`sareval.write_errors.ensure_free`): the workers
are terminated, the ``.partial`` is removed and one ``OutputWriteError`` names the store.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sareval.atomic import partial_path
from sareval.cores import default_workers
from sareval.errors import InputFileError, SarevalError
from sareval.progress import progress_bar
from sareval.store import StoreWriter, row_stats

#: ``--compression`` choices; lz4/zstd need hdf5plugin (Blosc2, byte shuffle) to write AND read.
COMPRESSIONS = ("lzf", "gzip", "none", "lz4", "zstd")
#: Measured in benchmarks/RESULTS.md ("Preprocess and store reads"): uncompressed chunks are the
#: fastest to write (the main process compresses, so lzf/gzip cap preprocess throughput) and to
#: read (warm and cold), and every h5py reads them; the cost is size (= the raw arrays, about
#: the GeoTIFF tree's size; lzf: ~0.55, lz4: ~0.5). Use ``lzf`` when disk space matters.
DEFAULT_COMPRESSION = "none"


def compression_filter(name: str) -> Any:
    """The h5py ``compression`` argument for a compression name (``preprocess`` option)."""
    if name == "none":
        return None
    if name == "lzf":
        return "lzf"
    if name == "gzip":
        import h5py

        return h5py.filters.Gzip(level=1)  # level 1: the fastest DEFLATE
    if name in ("lz4", "zstd"):
        try:
            import hdf5plugin
        except ImportError:
            raise SarevalError(
                f"compression= {name} needs the hdf5plugin package (pip install hdf5plugin); "
                "lzf and gzip need nothing"
            ) from None
        level = 5 if name == "lz4" else 1
        return hdf5plugin.Blosc2(cname=name, clevel=level, filters=hdf5plugin.Blosc2.SHUFFLE)  # type: ignore[arg-type]
    raise SarevalError(f"unknown compression {name!r}; known: {', '.join(COMPRESSIONS)}")


def chunk_rows_for(row_bytes: int, target_bytes: int = 4 << 20) -> int:
    """Rows per HDF5 chunk so that one chunk of the largest sensor is about ``target_bytes``."""
    return int(max(1, min(64, target_bytes // max(row_bytes, 1))))


@dataclass
class RowBlock:
    """What a reader returns for consecutive rows: the arguments of ``write_rows``."""

    arrays: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    cloud_cover: np.ndarray
    cloudy_available: np.ndarray | None = None
    geo_transform: np.ndarray | None = None
    geo_crs: list[str] | None = None
    stats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    cloud_mask: np.ndarray | None = None


@dataclass
class ReadFailure:
    """A reader's InputFileError, sent back from a worker (exceptions with custom init do not
    survive pickling)."""

    path: str
    problem: str


def read_safely(read_block: Callable[[Sequence[Any]], RowBlock], items: Sequence[Any]) -> Any:
    """``read_block(items)`` plus the rows' band statistics (computed here, in the worker, so
    that the writing process only compresses and writes)."""
    try:
        block = read_block(items)
    except InputFileError as e:
        return ReadFailure(str(e.path), e.problem)
    block.stats = {name: row_stats(a) for name, a in block.arrays.items()}
    return block


def _worker_signals() -> None:
    """A pool worker ignores Ctrl-C (the main process handles it and stops the pool) and dies
    on SIGTERM by the default action; SIGTERM, blocked across the fork, is unblocked only now,
    so one sent meanwhile is delivered here rather than lost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Any]:
    """A fork (else spawn) process pool whose end cannot hang: after the block the workers
    leave on the pool's end-of-work sentinel (``close`` + ``join``, no signal); when the block
    raises, ``terminate`` sends SIGTERM, which kills them by the default action.

    Why: ``Pool``'s own exit always terminates with SIGTERM, and a worker inherits the main
    process's Python SIGTERM handler; a SIGTERM that reached a worker while it was still being
    forked was lost (CPython clears a child's pending Python signals) and ``Pool.__exit__``
    waited for that worker forever: seen as a hung rerun, whose pool ends right after it
    starts. SIGTERM is therefore blocked in the main process while the pool forks, and each
    worker sets the default action before unblocking it (:func:`_worker_signals`)."""
    # fork (cheap) where available, before any thread exists (tqdm's monitor); the children
    # never touch the inherited HDF5 file and leave with os._exit
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    masked = hasattr(signal, "pthread_sigmask")
    if masked:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        pool = mp.get_context(method).Pool(workers, initializer=_worker_signals)
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    try:
        yield pool
    except BaseException:
        stop_pool(pool)
        raise
    pool.close()
    pool.join()


#: seconds :func:`stop_pool` waits for ``Pool.terminate`` before it kills the workers
STOP_SECONDS = 5.0


def stop_pool(pool: Any) -> None:
    """End a pool after a failure without hanging: ``Pool.terminate`` (SIGTERM to the workers)
    in a daemon thread, waited for at most :data:`STOP_SECONDS`. It can block for good on its
    own sentinel when a worker still sending a large block keeps the result pipe full (seen
    when a full disk stopped the writer with blocks in flight); then every worker is killed
    (SIGKILL) and the rest is left to the process exit (the pool's threads are daemons)."""
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(STOP_SECONDS)
    if not stopper.is_alive():
        pool.join()
        return
    for worker in list(getattr(pool, "_pool", ())):  # the Pool's worker processes
        with contextlib.suppress(Exception):
            worker.kill()
    stopper.join(STOP_SECONDS)


def write_block(writer: StoreWriter, start: int, block: RowBlock) -> None:
    writer.write_rows(
        start,
        block.arrays,
        block.labels,
        cloud_cover=block.cloud_cover,
        cloudy_available=block.cloudy_available,
        geo_transform=block.geo_transform,
        geo_crs=block.geo_crs,
        stats=block.stats,
        cloud_mask=block.cloud_mask,
    )


def run_pipeline(
    writer: StoreWriter,
    read_block: Callable[[Sequence[Any]], RowBlock],
    items: Sequence[Any],
    *,
    workers: int | None,
    chunk_rows: int,
    progress: bool = True,
    desc: str = "preprocess",
) -> None:
    """Read ``items`` block by block (``read_block`` must be picklable: a module-level function
    or a ``functools.partial`` of one) and write every row not yet in ``writer``.

    A block is a whole number of the store's ``chunk_rows``-row chunks, at least 8 rows (each
    chunk is written once); ``workers=None`` uses every core this process may use."""
    workers = default_workers() if workers is None else workers
    block_rows = chunk_rows * max(1, -(-8 // chunk_rows))

    if len(items) != writer.n:
        raise ValueError(f"{len(items)} items for a store of {writer.n} rows")
    if writer.rows_written:
        writer.verify_written()
    start = writer.rows_written
    starts = list(range(start, writer.n, block_rows))
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1 and len(starts) > 1:
            pool = stack.enter_context(worker_pool(min(workers, len(starts))))
        bar = stack.enter_context(
            progress_bar(
                total=writer.n,
                initial=start,
                unit="patch",
                desc=desc,
                disable=not progress,  # a terminal gets a bar, a log plain lines
                leave=False,
            )
        )

        def handle(a: int, result: Any) -> None:
            if isinstance(result, ReadFailure):
                raise InputFileError(result.path, result.problem)
            write_block(writer, a, result)
            bar.update(len(result.cloud_cover))

        if pool is None:
            for a in starts:
                handle(a, read_safely(read_block, items[a : a + block_rows]))
            return
        pending: collections.deque[tuple[int, Any]] = collections.deque()
        todo = iter(starts)

        def submit(a: int) -> None:
            chunk = items[a : a + block_rows]
            pending.append((a, pool.apply_async(read_safely, (read_block, chunk))))

        for a in itertools.islice(todo, 2 * workers):  # bounded: at most 2 x workers in flight
            submit(a)
        while pending:
            a, job = pending.popleft()
            handle(a, job.get())
            nxt = next(todo, None)
            if nxt is not None:
                submit(nxt)


def config_file_entry(path: str | Path | None) -> Any:
    """How an input file enters a job's configuration: absolute path, size and mtime."""
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def check_utf8_paths(*paths: str | Path | None) -> None:
    """Refuse an input or output path that is not valid UTF-8 (the store records its inputs
    as UTF-8 text attributes)."""
    for path in paths:
        if path is None:
            continue
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise InputFileError(path, "the path is not valid UTF-8; rename it") from None


def read_text_input(path: str | Path, what: str) -> str:
    """The UTF-8 text (a BOM tolerated) of an input file; ``what`` names it in the error."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(path, f"not {what}") from None


def read_id_list(path: str | Path) -> list[str]:
    """One name per line (first comma-separated column; CRLF and blank lines tolerated)."""
    text = read_text_input(path, "a text file of patch names")
    names = [line.split(",")[0].strip() for line in text.splitlines()]
    return [n for n in names if n]


def very_cloudy_subset(
    writer: StoreWriter,
    cloudy: np.ndarray,
    threshold: float,
    very_rows: np.ndarray | None,
    very_cloudy_list: str | Path | None,
) -> tuple[np.ndarray, str]:
    """Rows and description of ``very_cloudy``: the rows of a user list when one was given
    (``very_rows``), else the ``cloudy`` rows with written cloud cover >= ``threshold``."""
    if very_rows is not None:
        return very_rows, f"cloudy patches listed in {Path(str(very_cloudy_list)).name}"
    cover = writer.written_cloud_cover()
    return cloudy[cover[cloudy] >= threshold], f"cloudy patches with cloud cover >= {threshold:g}"


def subset_rows_from_list(
    list_path: str | Path,
    ids: Sequence[str],
    allowed_rows: np.ndarray,
    normalise: Callable[[str], str],
) -> np.ndarray:
    """Rows of the ids named in ``list_path`` (after ``normalise``); each must be allowed."""
    index = {i: r for r, i in enumerate(ids)}
    allowed = set(int(r) for r in allowed_rows)
    rows, unknown = [], []
    for name in read_id_list(list_path):
        r = index.get(normalise(name))
        if r is None or r not in allowed:
            unknown.append(name)
        else:
            rows.append(r)
    if unknown:
        raise InputFileError(
            list_path,
            f"{len(unknown)} listed patches are not among the cloudy patches of this store, "
            f"e.g. {unknown[0]}",
        )
    return np.unique(np.asarray(rows, dtype=np.int64))


def write_job(
    writer: StoreWriter,
    reader: Any,
    items: Sequence[Any],
    subsets: Callable[[], Mapping[str, tuple[np.ndarray, str, str]]],
    *,
    cloud_cover_method: str,
    extra_attrs: Mapping[str, Any],
    workers: int | None,
    chunk_rows: int,
    progress: bool,
    desc: str,
) -> Path:
    """Read ``items`` into ``writer`` (:func:`run_pipeline`), add ``subsets()`` (computed from
    the written rows) and finish the store; on any failure :func:`abort_writer`."""
    try:
        run_pipeline(
            writer,
            reader,
            items,
            workers=workers,
            chunk_rows=chunk_rows,
            progress=progress,
            desc=desc,
        )
        return writer.finish(
            dict(subsets()), cloud_cover_method=cloud_cover_method, extra_attrs=extra_attrs
        )
    except BaseException as e:
        raise abort_writer(writer, e) from None


def abort_writer(writer: StoreWriter, error: BaseException) -> BaseException:
    """Close ``writer`` after ``error``; keep its ``.partial`` only when it holds rows (a re-run
    resumes from it). Returns the exception to raise, noting where the rows done are kept."""
    writer.abort()
    partial = partial_path(writer.out)
    if writer.rows_written == 0:
        partial.unlink(missing_ok=True)
        return error
    if isinstance(error, InputFileError):
        return InputFileError(
            error.path,
            f"{error.problem} (the {writer.rows_written} rows done are kept in {partial}; "
            "fix the file and re-run to resume)",
        )
    return error
