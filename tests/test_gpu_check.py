"""benchmarks/gpu_check.sh on the CPU (--cpu-dry-run): the same code path, tiny sizes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_prints_parity_and_throughput(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--patches", "20",
         "--parity-patches", "12", "--size", "32", "--batch-size", "8",
         "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("CPU DRY RUN (no GPU used)")[1].splitlines()
    modes = {line.split()[0]: line.split() for line in table[2:] if line.strip()}
    for mode in ("ort-cuda", "ort-tensorrt", "torch-cuda-fp32", "torch-cuda-bf16-verified"):
        assert modes[mode][-1] == "OK" and float(modes[mode][1]) > 0
        assert modes[f"seg-{mode}"][-1] == "OK" and float(modes[f"seg-{mode}"][1]) > 0
    assert float(modes["read"][-2]) > 0


def test_without_a_gpu_it_says_so_and_fails() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "torch sees no CUDA device" in done.stdout
