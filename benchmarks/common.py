"""Helpers shared by the benchmark scripts: where the data is, what machine this is, writing docs/benchmarks.md."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import re
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def data_dir(arg: str | None) -> str:
    return arg or os.environ.get("CIFAR_TUNE_DATA_DIR") or str(DEFAULT_DATA)


def machine() -> str:
    import torch
    import torchvision

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only ({cpu}, {os.cpu_count()} cores)"
    return (f"device: {dev}; python {platform.python_version()}, torch {torch.__version__}, torchvision "
            f"{torchvision.__version__}; date {dt.date.today().isoformat()}")


def write_section(title: str, body: str) -> None:
    """Replace (or append) the section ``## title`` of docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured by the scripts in `benchmarks/`; each section names its device, versions and date.\n"
    block = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda m: block + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    DOC.write_text(text)


def publish(title: str, lines: list[str], script: str, smoke: bool, note: str = "") -> None:
    """Print the table; unless ``smoke``, write it as the section ``title`` with its note and the command."""
    table = "\n".join(lines)
    print(table)
    if not smoke:
        write_section(title, f"{table}\n\n{note + ' ' if note else ''}Command: `python -m benchmarks.{script}`.")


def save_record(storage: Path, name: str, record: dict, text: str, title: str, publish: bool) -> None:
    """A benchmark's record (JSON) and its markdown: saved under ``storage`` and printed; with ``publish`` (its full
    settings) also written to docs/results/``name`` and as the section ``title`` of docs/benchmarks.md."""
    from trainables.experiment import write_json

    write_json(storage / name, record)
    print(text)
    if publish:
        write_json(REPO / "docs" / "results" / name, record)
        write_section(title, text)


@contextlib.contextmanager
def scratch_storage():
    """A throw-away results folder for the searches a benchmark runs; Ray is shut down when it closes."""
    with tempfile.TemporaryDirectory() as storage:
        try:
            yield storage
        finally:
            import ray

            ray.shutdown()
