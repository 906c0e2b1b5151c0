"""The runnable examples of docs/api.md run as written (every ``python`` block, in order)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert len(blocks()) >= 3
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {"__name__": "docs_api"}
    for i, code in enumerate(blocks()):
        exec(compile(code, f"{DOC.name}[block {i}]", "exec"), scope)
    out = capsys.readouterr().out
    assert "R(sar)" in out and "R(rgb)" not in out.split("\n")[0]
    assert (tmp_path / "groups.json").is_file() and os.listdir(tmp_path)
