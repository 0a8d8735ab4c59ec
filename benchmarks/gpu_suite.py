"""Every GPU measurement in one call: the benchmarks' GPU paths, then the largest full-scale reproductions that fit.

Meant for the few minutes a GPU machine is lent (``device`` tool): one command, a deadline, every table written
under ``--out`` (the repository copy on that machine is thrown away) and copied into ``docs/`` when run at home.
Steps run one after another as subprocesses, each with its share of the time; a step that runs out of time is
killed and recorded as such (a reproduction keeps its finished trials and runs: the same command continues it).

    python -m benchmarks.gpu_suite --out $OUT                 # <= 8 minutes on one GPU
    python -m benchmarks.gpu_suite --smoke --out /tmp/suite   # CPU, tiny sizes, report003's plan listed (CI)

Steps (seconds of the 480-second default budget): loader ratio on the GPU (45), epoch times of all nine nets (75),
packing 1/2/4/8 trials per GPU (75), bf16 / channels_last / compile (60), then the reproductions at the plans' full
budgets, each with what time is left, in this order (their searches pack four trials per GPU): ``cifar-tune
reproduce`` report003, report000, report001 (keras_cnn and resnet18), report004 (lozano_c/e/f) and report002
(ghasemi_net, whose plan's CPU compromise is lifted: its search on all the training images, not the 10,000-image
proxy). Whatever runs out of time is recorded so and continues with the same command and
``--out``; ``--reproductions report002,...`` spends a lease on some of them. ``OUT/gpu_suite.json`` lists each
step's command, exit status, seconds and output tail; ``OUT/benchmarks.md`` is docs/benchmarks.md as the steps left
it; ``OUT/results/`` holds the reproductions (``reproduce.json`` / ``reproduce.md`` per report).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import DOC, REPO, data_dir, machine

STEPS = [  # (name, share of the budget in seconds, module args)
    ("loader", 45, ["-m", "benchmarks.loader", "--device", "auto"]),
    ("epoch_times", 75, ["-m", "benchmarks.epoch_times"]),
    ("packing", 75, ["-m", "benchmarks.packing"]),
    ("speedups", 60, ["-m", "benchmarks.speedups"]),
]
# report -> extra arguments: what a GPU pays that the CPU plan could not (search/reproduce_plans.py says which)
REPRODUCTIONS = {"report003": [], "report000": [], "report001": [], "report004": [],
                 "report002": ["--set", "subset=0"]}
# Smoke mode (CI, CPU) checks the reproduction step's command line and plan (`--list`: the plan, its measured-speed
# ETA) without training: tests/test_reproduce.py runs the same command at toy sizes, killed and rerun.
SMOKE = ["--list"]


def reproduction_commands(data: str, results: Path, smoke: bool, reports: list[str] | None = None) -> list:
    """(step name, module args) of each reproduction the suite runs: the full plans, or in smoke mode report003's
    plan listed (--list)."""
    chosen = ["report003"] if smoke else (reports or list(REPRODUCTIONS))
    return [(f"reproduce-{r}", ["-m", "search.cli", "reproduce", r, "--data-dir", data, "--storage", str(results),
                                *(SMOKE if smoke else REPRODUCTIONS[r])]) for r in chosen]


def run_step(name: str, args: list[str], seconds: float, log_dir: Path) -> dict:
    log = log_dir / f"{name}.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait(timeout=max(1.0, seconds))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = "out of time"
    text = log.read_text()
    return {"step": name, "command": " ".join(["python", *args]), "exit": rc,
            "seconds": round(time.monotonic() - t0, 1), "tail": text[-2000:]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, help="folder for every table and log (created)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole suite")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, benchmarks with --smoke; still writes --out")
    p.add_argument("--reproductions", default=None, metavar="R1,R2",
                   help=f"only these reproductions, in this order (default: {','.join(REPRODUCTIONS)})")
    args = p.parse_args(argv)
    reports = [r.strip() for r in args.reproductions.split(",")] if args.reproductions else None
    unknown = sorted(set(reports or []) - set(REPRODUCTIONS))
    if unknown or (reports is not None and not all(reports)):
        print(f"gpu_suite: error: --reproductions {args.reproductions!r}: known: {', '.join(REPRODUCTIONS)}",
              file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    data = data_dir(args.data_dir)
    deadline = time.monotonic() + args.budget
    doc_before = DOC.read_text() if DOC.exists() else None
    record = {"machine": machine(), "smoke": args.smoke, "budget_seconds": args.budget, "steps": []}
    for name, share, cmd in STEPS:
        left = deadline - time.monotonic()
        cmd = [*cmd, "--data-dir", data, *(["--smoke"] if args.smoke else [])]
        record["steps"].append(run_step(name, cmd, min(share, left) if not args.smoke else left,
                                        out / "logs") if left > 5 else {"step": name, "exit": "skipped: no time left"})
    for name, cmd in reproduction_commands(data, out / "results", args.smoke, reports):
        left = deadline - time.monotonic()
        record["steps"].append(run_step(name, cmd, left, out / "logs") if left > 30
                               else {"step": name, "exit": "skipped: no time left"})
    if DOC.exists():
        shutil.copy(DOC, out / "benchmarks.md")
    if args.smoke and doc_before is not None:  # smoke numbers never replace measured ones
        DOC.write_text(doc_before)
    (out / "gpu_suite.json").write_text(json.dumps(record, indent=1))
    lines = [record["machine"], "", "| step | exit | seconds |", "|---|---|---:|"]
    lines += [f"| {s['step']} | {s['exit']} | {s.get('seconds', '')} |" for s in record["steps"]]
    (out / "gpu_suite.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(s["exit"] == 0 for s in record["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
