"""Progress of long loops, readable where people run them.

:func:`progress_bar` takes tqdm's arguments and returns

- on a terminal (the stream, stderr by default, ``isatty()``) or in a Jupyter kernel: a tqdm
  bar (``tqdm.auto``: a widget in a notebook);
- otherwise (a log file, a batch job's output, a pipe): a :class:`LineProgress` that writes one
  plain line every ``interval`` seconds (default 10, or the environment variable
  ``SAREVAL_PROGRESS_INTERVAL``) and a last line on close when it wrote any (``done in`` or,
  short of the total, ``stopped after``), never a carriage return::

      shape clear: 12000/50000 sample (24%), 310 sample/s, 2:02 left

- with ``disable=True`` (``sareval -q``): nothing at all.

It is a drop-in for the uses here: ``from sareval.progress import progress_bar as tqdm``.
``disable=None`` (tqdm: "off when not a terminal") counts as enabled, since a log now gets
lines instead of a bar.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

log = logging.getLogger(__name__)

INTERVAL_ENV = "SAREVAL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def progress_interval(default: float = DEFAULT_INTERVAL) -> float:
    """Seconds between plain progress lines: ``$SAREVAL_PROGRESS_INTERVAL`` if it is a positive
    number, else ``default`` (a bad value is logged and ignored)."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        log.warning(
            "%s=%r is not a positive number of seconds; using %g", INTERVAL_ENV, text, default
        )
        return default
    return value


def format_seconds(seconds: float) -> str:
    """``42 s``, ``2:02``, ``1:02:03`` (h:mm:ss)."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


class LineProgress:
    """tqdm's interface (``update``, ``close``, iteration, ``set_postfix``, context manager)
    writing a plain line every ``interval`` seconds (see the module docstring)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        initial: float = 0,
        interval: float | None = None,
        file: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.initial = initial
        self.interval = progress_interval() if interval is None else float(interval)
        self.file = file
        self.clock = clock
        self.start = self.last = clock()
        self.postfix = ""
        self.lines = 0
        self.closed = False

    def _stream(self) -> IO[str]:
        return self.file if self.file is not None else sys.stderr

    def line(self, now: float | None = None, final: bool = False) -> str:
        """The progress line as of ``now``."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        parts = [
            f"{self.n:g}/{self.total:g} {self.unit}" if self.total else f"{self.n:g} {self.unit}"
        ]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{_rate(rate)} {self.unit}/s")
        if final:
            stopped = self.total and self.n < self.total
            parts.append(f"{'stopped after' if stopped else 'done in'} {format_seconds(elapsed)}")
        elif self.total and rate > 0 and self.n < self.total:
            parts.append(f"{format_seconds((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        prefix = f"{self.desc}: " if self.desc else ""
        return prefix + ", ".join(parts)

    def _write(self, text: str) -> None:
        stream = self._stream()
        stream.write(text + "\n")
        stream.flush()
        self.lines += 1

    def update(self, n: float = 1) -> None:
        """Count ``n`` more; write a line when ``interval`` seconds passed since the last."""
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._write(self.line(now))

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``key=value`` pairs appended to the following lines."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items()
        )

    def set_description(self, desc: str | None = None) -> None:
        self.desc = desc

    def close(self) -> None:
        """Write the last line (only when any was written before)."""
        if self.closed:
            return
        self.closed = True
        if self.lines:
            self._write(self.line(final=True))

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress was created without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _interactive(stream: IO[str]) -> bool:
    """A terminal, or a Jupyter kernel's output stream (where tqdm.auto draws a widget)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    disable: bool | None = False,
    interval: float | None = None,
    file: IO[str] | None = None,
    **kwargs: Any,
) -> Any:
    """A tqdm bar on a terminal, a :class:`LineProgress` elsewhere, nothing when ``disable``.

    ``kwargs`` are tqdm's (``total``, ``desc``, ``unit``, ``initial``, ``leave``,
    ``unit_scale``, ``dynamic_ncols``, ``smoothing``, ...); the plain lines use ``total``,
    ``desc``, ``unit`` and ``initial`` and ignore the rest.
    """
    from tqdm.auto import tqdm

    stream = file if file is not None else sys.stderr
    if disable:
        return tqdm(iterable, disable=True, **kwargs)
    if _interactive(stream):
        return tqdm(iterable, file=file, **kwargs)
    keep = {k: kwargs[k] for k in ("total", "desc", "unit", "initial") if k in kwargs}
    return LineProgress(iterable, interval=interval, file=file, **keep)
