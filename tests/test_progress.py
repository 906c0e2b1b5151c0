"""Progress: plain periodic lines in logs, tqdm on terminals, nothing when quiet."""

import io
import logging
import re
import subprocess
import sys
import textwrap

import pytest

from sareval.progress import (
    INTERVAL_ENV,
    LineProgress,
    format_seconds,
    progress_bar,
    progress_interval,
)

LOOP = textwrap.dedent(
    """
    import time
    from sareval.progress import progress_bar

    bar = progress_bar(total=30, desc="work", unit="item", disable={disable})
    for _ in range(30):
        time.sleep(0.03)
        bar.update(1)
    bar.close()
    for _ in progress_bar(range(20), desc="iterate", disable={disable}):
        time.sleep(0.03)
    """
)


def _run_loop(tmp_path, disable: bool) -> str:
    log = tmp_path / "stderr.log"
    env = {"PATH": "/usr/bin:/bin", INTERVAL_ENV: "0.1"}
    with open(log, "wb") as err:
        subprocess.run(
            [sys.executable, "-c", LOOP.format(disable=disable)],
            stderr=err, stdout=subprocess.DEVNULL, env=env, check=True, cwd=tmp_path,
        )  # fmt: skip
    return log.read_bytes().decode()


def test_log_file_gets_periodic_lines(tmp_path):
    text = _run_loop(tmp_path, disable=False)
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    work = [line for line in lines if line.startswith("work: ")]
    assert len(work) >= 4  # ~0.9 s at one line per 0.1 s, plus the last line
    pattern = r"work: \d+/30 item \(\d+%\), [\d.]+ item/s, \d+ s left"
    for line in work[:-1]:
        assert re.fullmatch(pattern, line), line
    assert re.fullmatch(r"work: 30/30 item \(100%\), [\d.]+ item/s, done in \d+ s", work[-1])
    done = [int(line.split()[1].split("/")[0]) for line in work[:-1]]
    assert done == sorted(done) and done[0] < 30
    iterate = [line for line in lines if line.startswith("iterate: ")]
    assert len(iterate) >= 3 and "20/20 it (100%)" in iterate[-1]
    assert len(lines) == len(work) + len(iterate)


def test_quiet_prints_nothing(tmp_path):
    assert _run_loop(tmp_path, disable=True) == ""


def test_lines_by_clock():
    now = [0.0]
    out = io.StringIO()
    bar = LineProgress(total=100, desc="shape clear", unit="sample", interval=10, file=out,
                       clock=lambda: now[0])  # fmt: skip
    for t in (4.0, 10.0, 15.0, 20.0):
        now[0] = t
        bar.update(10)
    assert out.getvalue().splitlines() == [
        "shape clear: 20/100 sample (20%), 2 sample/s, 40 s left",
        "shape clear: 40/100 sample (40%), 2 sample/s, 30 s left",
    ]
    bar.set_postfix({"loss": 0.123456}, oa=0.5)
    now[0] = 200.0
    bar.close()
    bar.close()  # once only
    assert out.getvalue().splitlines()[-1] == (
        "shape clear: 40/100 sample (40%), 0.2 sample/s, stopped after 3:20, loss=0.1235, oa=0.5"
    )
    # no total, and a loop shorter than the interval writes nothing
    short = io.StringIO()
    with LineProgress(desc="x", file=short, interval=10, clock=lambda: 0.0) as b:
        b.update(3)
    assert short.getvalue() == ""
    assert LineProgress(initial=5, unit="epoch", clock=lambda: 1.0).line() == "5 epoch, 0 epoch/s"
    # an interrupted loop does not claim to be done
    now[0] = 0.0
    failed = io.StringIO()
    with (
        pytest.raises(KeyError),
        LineProgress(total=10, desc="f", interval=1, file=failed, clock=lambda: now[0]) as b,
    ):
        now[0] = 2.0
        b.update(4)
        raise KeyError
    assert failed.getvalue().splitlines()[-1] == "f: 4/10 it (40%), 2 it/s, stopped after 2 s"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_tqdm_and_disabled_gets_nothing():
    from tqdm.auto import tqdm

    term = _Terminal()
    bar = progress_bar(total=5, desc="t", unit="sample", unit_scale=True, file=term)
    assert isinstance(bar, tqdm)
    bar.update(5)
    bar.close()
    assert "\r" in term.getvalue()
    plain = io.StringIO()
    line = progress_bar(total=5, desc="t", unit_scale=True, dynamic_ncols=True, file=plain,
                        smoothing=0.1, leave=False)  # fmt: skip
    assert isinstance(line, LineProgress)
    quiet = io.StringIO()
    off = progress_bar(total=5, disable=True, file=quiet)
    off.update(5)
    off.close()
    assert quiet.getvalue() == ""
    assert list(progress_bar(range(3), disable=True)) == [0, 1, 2]


def test_interval_from_environment(monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert progress_interval() == 10.0
    monkeypatch.setenv(INTERVAL_ENV, "2.5")
    assert progress_interval() == 2.5
    assert LineProgress(total=1).interval == 2.5
    messages = io.StringIO()
    handler = logging.StreamHandler(messages)
    logger = logging.getLogger("sareval.progress")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.WARNING)  # a CLI test in this process may have raised the root's
    try:
        for bad in ("soon", "0", "-1", "inf", "nan"):
            monkeypatch.setenv(INTERVAL_ENV, bad)
            assert progress_interval() == 10.0
            assert f"{INTERVAL_ENV}={bad!r}" in messages.getvalue()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize(("seconds", "text"), [(4.4, "4 s"), (122, "2:02"), (3723, "1:02:03")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_shape_log_has_periodic_progress_lines(tmp_path):
    """``sareval shape`` with stderr redirected to a file (a batch job's log)."""
    import os
    from pathlib import Path

    from shape_testing import export_onnx, make_card, tiny_net, write_store

    store = write_store(tmp_path / "s.h5", n=60)
    model = tmp_path / "m.onnx"
    export_onnx(tiny_net(), make_card(), model)
    log = tmp_path / "stderr.log"
    sareval_bin = Path(sys.executable).with_name("sareval")
    env = {**os.environ, INTERVAL_ENV: "0.01"}
    with open(log, "wb") as err:
        subprocess.run(
            [str(sareval_bin), "shape", "-m", str(model), "-d", str(store), "-s", "clear",
             "--batch-size", "2"],
            stderr=err, stdout=subprocess.DEVNULL, env=env, check=True, cwd=tmp_path,
        )  # fmt: skip
    text = log.read_bytes().decode()
    assert "\r" not in text and "\x1b" not in text
    lines = [line for line in text.splitlines() if line.startswith("shape ")]
    assert len(lines) >= 2, text
    assert re.search(r"\d+/60 sample", lines[0]) and "60/60" in lines[-1]
