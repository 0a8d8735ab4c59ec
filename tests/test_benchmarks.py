"""The benchmark scripts run (in --smoke mode: tiny sizes, no doc update). Their numbers live in docs/, not here."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.common import REPO


@pytest.mark.parametrize("script", ["loader", "ray_overhead", "epoch_times", "hpo_efficiency", "packing", "speedups"])
def test_benchmark_smoke(script, cifar_path):
    doc = REPO / "docs" / "benchmarks.md"
    before = doc.read_text() if doc.exists() else None
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--smoke", "--data-dir", str(cifar_path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| " in out.stdout and "device:" in out.stdout
    assert (doc.read_text() if doc.exists() else None) == before  # smoke runs never overwrite measured numbers
