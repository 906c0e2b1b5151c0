"""Atomic output files: written under a temporary name, renamed into place when complete.

A crash, an error or Ctrl-C never leaves a file at the output path that looks complete::

    with atomic_output(out, overwrite=False) as tmp:
        write_everything(tmp)      # tmp = <out dir>/.<out name>.<pid>.tmp
    # here <out> exists and is complete

:func:`partial_path` gives the fixed name a resumable job (preprocess) writes to instead.
:class:`OutputSet` makes a command's several outputs (results JSON, CSV, predictions file)
appear together: each is written under ``.<name>.sareval-tmp-<pid>`` and all are renamed at
the end; temporaries a killed run left behind (its pid no longer running) are removed.
:func:`check_outputs` vets all of a command's outputs together before any work starts.
:func:`output_set` writes several outputs of one run so that they appear together or not at all.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from sareval.errors import OutputExistsError, SarevalError
from sareval.write_errors import as_write_error

#: the first bytes of every HDF5 file (a store or predictions file: never a dataset input)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: prefix of the private folder holding the temporary of an output that is a device or FIFO
STREAM_TEMP_PREFIX = "sareval-stream-"


def _lstat(path: str | Path) -> os.stat_result | None:
    """``os.lstat`` of ``path`` (the entry itself, a symlink not followed); None if missing."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _stat(path: str | Path) -> os.stat_result | None:
    """``os.stat`` of ``path`` (symlinks followed); None if it (or a link's target) is missing."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_stream_mode(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def is_stream(path: str | Path) -> bool:
    """Whether ``path`` is a character device or a FIFO, or a symlink to one (``/dev/stdout``):
    an output written to directly (``/dev/null`` discards, a FIFO streams), never replaced.
    (A symlink to anything else is replaced as a link, its target untouched.)"""
    st = _lstat(path)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        st = _stat(path)
    return st is not None and _is_stream_mode(st.st_mode)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISFIFO, "a FIFO"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_output(path: str | Path, overwrite: bool, *, streams: bool = True) -> Path:
    """Return ``path`` as a Path after vetting what is there now (symlinks not followed).

    Missing: fine. A regular file or a symlink (replaced as a link, its target untouched):
    refused without ``overwrite``. A character device or a FIFO: written to directly, no
    ``overwrite`` needed; refused when ``streams`` is false (an output that must be a regular
    file, such as a resumable store). Anything else (a folder, a socket, a block device):
    refused."""
    path = Path(path)
    st = _lstat(path)
    if st is None:
        return path
    if is_stream(path):
        if not streams:
            kind = _kind(os.stat(path).st_mode)
            raise SarevalError(
                f"{path}: is {kind}; this output is an HDF5 file written and resumed in "
                "place, give a file name"
            )
        return path
    if stat.S_ISDIR(st.st_mode):
        raise SarevalError(f"{path}: is a folder, expected an output file name")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise SarevalError(f"{path}: is {_kind(st.st_mode)}; refused as an output")
    if stat.S_ISLNK(st.st_mode) and os.readlink(path).startswith("/proc/"):
        raise SarevalError(f"{path}: is a link to a process's open file; refused as an output")
    if not overwrite:
        raise OutputExistsError(path)
    return path


def check_writable_folder(path: Path) -> None:
    """Refuse ``path`` when it is a directory or its nearest existing parent is not a writable
    directory (missing parents are created when the output is written). A device or FIFO
    needs no writable folder (it is written to, not replaced)."""
    st = _lstat(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise SarevalError(f"{path}: is a folder, expected an output file name")
    if is_stream(path):
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SarevalError(f"{path}: cannot be written ({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SarevalError(f"{path}: cannot be written (folder {parent} is not writable)")


def _identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of what ``path`` names, symlinks followed; None if nothing is there."""
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def _is_hdf5(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def check_not_input(option: str, path: Path, inputs: Iterable[str | Path]) -> None:
    """Refuse the output ``path`` (given as ``option``) when it is one of ``inputs``.

    Compared after symlinks and hard links (same device and inode) and by resolved name. An
    input folder (a dataset tree) is one input too: an output that is the folder is refused,
    and so is an existing file inside it that is not HDF5 (a GeoTIFF, a list, a metadata
    file the command may read); a new file, or a previous store, inside the tree is fine."""
    ident, resolved = _identity(path), path.resolve()
    for given in inputs:
        given = Path(given)
        st = _stat(given)
        same = st is not None and ident == (st.st_dev, st.st_ino)
        if same or resolved == given.resolve():
            raise SarevalError(f"{path}: {option} is the input {given}; refused as an output")
        if st is None:
            continue
        if stat.S_ISDIR(st.st_mode) and ident is not None and not is_stream(path):
            inside = resolved.is_relative_to(given.resolve())
            if inside and not _is_hdf5(resolved):
                which = "" if resolved == path.absolute() else f" ({resolved})"
                raise SarevalError(
                    f"{path}: {option} is a file{which} inside the input folder {given}; "
                    "refused as an output"
                )


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    overwrite: bool,
    *,
    json_option: str | None = None,
    inputs: Iterable[str | Path] = (),
    streams: bool = True,
) -> dict[str, Path]:
    """Vet a command's outputs (option name -> path; None: not written) before any work.

    Refused: an output that is one of ``inputs`` (:func:`check_not_input`: same file after
    symlinks and hard links, or a file of an input folder); two outputs naming the same file;
    what :func:`check_output` refuses (an existing output without ``overwrite``; a folder,
    socket or block device); an output whose folder is not writable; the results JSON
    ``json_option`` not ending in ``.json`` while another output is written (the CSV beside it
    would take the JSON's name). A character device or FIFO is accepted without ``overwrite``
    (refused when ``streams`` is false: stores). Returns the non-None outputs as Paths.
    """
    paths = {opt: Path(p) for opt, p in outputs.items() if p is not None}
    inputs = [Path(p) for p in inputs]
    seen: dict[object, str] = {}
    for opt, path in paths.items():
        check_not_input(opt, path, inputs)
        for key in {path.resolve(), _identity(path)} - {None}:
            if key in seen:
                raise SarevalError(f"{path}: {opt} and {seen[key]} name the same file")
            seen[key] = opt
    json_path = paths.get(json_option or "")
    if (
        json_path is not None
        and len(paths) > 1
        and not is_stream(json_path)
        and json_path.suffix.lower() != ".json"
    ):
        raise SarevalError(f"{json_path}: {json_option} is the results JSON; give it a .json name")
    for path in paths.values():
        check_output(path, overwrite, streams=streams)
        check_writable_folder(path)
    return paths


def check_store_output(
    out: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()
) -> Path:
    """Vet the output of a store writer (``preprocess_*``, :func:`~sareval.api.write_store`):
    :func:`check_outputs` of ``out`` against ``inputs`` (None: not given), a regular file
    only (a store is written and resumed in place, so a device or FIFO is refused)."""
    given = [p for p in inputs if p is not None]
    return check_outputs({"out": out}, overwrite, inputs=given, streams=False)["out"]


def check_output_folder(
    option: str, path: str | Path, overwrite: bool, inputs: Iterable[str | Path] = ()
) -> Path:
    """Vet an output folder (a report, a training run, a generated dataset) before any work.

    Refused: an existing non-empty folder without ``overwrite``; something there that is not
    a folder, a regular file or a symlink (a device, a FIFO, a socket); a folder that is one of
    ``inputs`` or holds one (replacing or filling it would change the input)."""
    path = Path(path)
    st = _lstat(path)
    if st is not None and not (
        stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
    ):
        raise SarevalError(f"{path}: {option} is {_kind(st.st_mode)}, expected a folder")
    resolved = path.resolve()
    for given in inputs:
        given = Path(given)
        if _stat(given) is None:
            continue
        if _identity(path) == _identity(given) or given.resolve().is_relative_to(resolved):
            raise SarevalError(f"{path}: {option} is or holds the input {given}; refused")
    if st is None:
        return path
    empty_folder = path.is_dir() and not any(path.iterdir())
    if not empty_folder and not overwrite:
        raise OutputExistsError(path)
    return path


def stream_temp(target: str | Path) -> Path:
    """A temporary regular file standing for the device or FIFO ``target``: in a private
    folder of the system's temporary directory (nothing is created beside a device)."""
    import tempfile

    folder = tempfile.mkdtemp(prefix=STREAM_TEMP_PREFIX)
    return Path(folder) / f".{Path(target).name}.{os.getpid()}.tmp"


def discard_temp(tmp: str | Path) -> None:
    """Remove a temporary file (and the private folder of a :func:`stream_temp`)."""
    tmp = Path(tmp)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    if tmp.parent.name.startswith(STREAM_TEMP_PREFIX):
        with contextlib.suppress(OSError):
            tmp.parent.rmdir()


def temp_for(target: str | Path, tmp: str | Path) -> Path:
    """``tmp`` (a name beside ``target``), or a :func:`stream_temp` when ``target`` is a
    character device or FIFO."""
    return stream_temp(target) if is_stream(target) else Path(tmp)


def copy_into(src: str | Path, target: str | Path) -> None:
    """Write the bytes of ``src`` into the existing device or FIFO ``target`` (opened for
    writing, never created, truncated, renamed over or unlinked). A write failure (``ENOSPC``
    of ``/dev/full``) is raised as an :class:`~sareval.write_errors.OutputWriteError` naming
    ``target``."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            with open(src, "rb") as f:
                while chunk := f.read(1 << 20):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as e:
        error = as_write_error(e, target)
        if error is e:
            raise
        raise error from None


def deliver(tmp: str | Path, target: str | Path) -> None:
    """Put the complete temporary ``tmp`` in place of ``target``: copied into a device or
    FIFO (then removed), else renamed over ``target`` (a symlink is replaced as a link)."""
    if is_stream(target):
        try:
            copy_into(tmp, target)
        finally:
            discard_temp(tmp)
    else:
        os.replace(tmp, target)


def partial_path(path: str | Path) -> Path:
    """The fixed temporary name of a resumable output: ``<dir>/<name>.partial``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    A character device or FIFO at ``path`` is written to directly instead (:func:`deliver`:
    the temporary lies in a private temporary folder and its bytes are copied in); a symlink
    is replaced as a link. On any exception (KeyboardInterrupt included) the temporary file is
    removed and the exception propagates (a full disk or an unwritable folder as one
    :class:`~sareval.write_errors.OutputWriteError`); ``path`` is untouched.
    """
    path = check_output(path, overwrite)
    tmp = temp_for(path, path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written")
        deliver(tmp, path)
    except BaseException as e:
        error = as_write_error(e, path)  # before the unlink frees the space
        discard_temp(tmp)
        if error is e:
            raise
        raise error from None


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` (a directory).

    An existing non-empty ``path`` is refused (:class:`OutputExistsError`) unless ``overwrite``;
    then the old directory is moved aside, the new one renamed in, and the old one deleted (a
    symlink is replaced as a link, its target untouched). A device, FIFO or socket at ``path``
    is refused (:func:`check_output_folder`). On any exception the temporary directory is
    removed and ``path`` is untouched.
    """
    import shutil

    path = check_output_folder("output folder", path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if os.path.lexists(path):
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


TMP_TAG = ".sareval-tmp-"


def set_temp_path(path: str | Path) -> Path:
    """The temporary name of ``path`` inside an output set: ``<dir>/.<name>.sareval-tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the output-set temporaries of ``path`` left by killed runs (their pid is dead),
    including the nested ``.<temp>.<pid>.tmp`` of a writer inside the set; return them."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.\.?{re.escape(path.name)}{re.escape(TMP_TAG)}(\d+)")
    removed = []
    for entry in path.parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed


class OutputSet:
    """The outputs of one run, written under temporary names and renamed together.

    :meth:`temp` gives the name to write each target to; :meth:`commit` copies the temporaries
    of targets that are devices or FIFOs into them, then renames every other temporary into
    place (SIGINT/SIGTERM blocked meanwhile); :meth:`abort` removes them.
    """

    def __init__(self, targets: Iterable[str | Path | None], overwrite: bool = False) -> None:
        self.targets = [Path(t) for t in targets if t is not None]
        self.overwrite = overwrite
        self._temps: dict[Path, Path] = {}
        for target in self.targets:
            if not is_stream(target):
                remove_stale_temporaries(target)

    def temp(self, target: str | Path) -> Path:
        """The temporary path that stands for ``target`` (its folder is created)."""
        target = Path(target)
        if target not in self.targets:
            raise ValueError(f"{target}: not an output of this set")
        if target not in self._temps:
            if not is_stream(target):
                target.parent.mkdir(parents=True, exist_ok=True)
            self._temps[target] = temp_for(target, set_temp_path(target))
        return self._temps[target]

    def _temp(self, target: Path) -> Path:
        return self._temps.get(target, set_temp_path(target))

    def commit(self) -> None:
        """Copy into the device / FIFO targets, then rename every other target's temporary
        into place; refuse first if one is missing."""
        for target in self.targets:
            check_output(target, self.overwrite)
            if not self._temp(target).exists():
                raise FileNotFoundError(f"{self._temp(target)}: nothing was written")
        streams = [t for t in self.targets if is_stream(t)]
        for target in streams:  # may block (a FIFO waits for its reader): signals stay on
            deliver(self._temp(target), target)
        blocked = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for target in self.targets:
                if target not in streams:
                    os.replace(self._temp(target), target)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def abort(self) -> None:
        """Remove this run's temporaries (the targets are untouched)."""
        for target in self.targets:
            discard_temp(self._temp(target))


@contextlib.contextmanager
def output_set(
    targets: Iterable[str | Path | None], overwrite: bool = False
) -> Iterator[OutputSet]:
    """An :class:`OutputSet` committed when the block succeeds, aborted on any exception."""
    outputs = OutputSet(targets, overwrite)
    try:
        yield outputs
        outputs.commit()
    except BaseException:
        outputs.abort()
        raise
