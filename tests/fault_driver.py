"""Test-only: run the ``cifar-tune`` command line with faults injected inside every trial.

    python tests/fault_driver.py '{"raise_at_epoch": 3}' search --arch origin_net ...

The package never imports this file. It swaps ``trainables.train.tune_trainable`` (which ``search.tuner`` looks up
when it builds the Tuner) for a wrapper; Ray pickles the wrapper by value (it lives in ``__main__``), so the
workers run it without this file on their path. The wrapper calls the real trainable; the faults are real:

raise_at_epoch: k   a trial's first attempt (no checkpoint to restore) raises RuntimeError when epoch k has been
                    trained, before it is reported; Tune's retry then resumes from the checkpoint of epoch k-1.
corrupt_newest: {"experiment": DIR, "archs": [...]}
                    with raise_at_epoch, trials of these nets first truncate their newest checkpoint on disk (the
                    one Tune will restore, of epoch k-1) to half its size, as a crash mid-write would leave it.
hold_after_epoch: k a trial's first attempt, once epoch k is reported (and its checkpoint recorded), waits for
                    ever: the search is certain to be unfinished when a test signals it, however busy the machine.
release_file: path  with hold_after_epoch, the wait ends once this file exists (the test creates it): trials are
                    certain to be mid-run, all at once, when the test acts, then they finish.
driver_enospc: true the driver's first write of asha_state.json fails with OSError(ENOSPC), as on a full disk.
memory_cap_mb: m    each trial may grow its address space by at most m MiB (a soft RLIMIT_AS, lifted again
                    when the trial ends), as on a machine with that little free memory: an absurd batch fails in
                    the allocator with "can't allocate memory" instead of summoning the kernel's OOM killer.
"""
from __future__ import annotations

import json
import sys


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _truncate_newest_checkpoint(experiment: str, arch: str) -> None:
    from pathlib import Path

    from ray import tune

    trial_dir = Path(experiment) / f"{arch}_{tune.get_context().get_trial_id()}"
    newest = sorted(trial_dir.glob("checkpoint_[0-9]*"))[-1] / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])


def make_trainable(faults: dict):
    raise_at = faults.get("raise_at_epoch")
    cap_mb = faults.get("memory_cap_mb")
    corrupt = faults.get("corrupt_newest") or {}
    hold_after = faults.get("hold_after_epoch")
    release = faults.get("release_file")

    def tune_trainable(config, data=None):
        import resource

        from ray import tune

        import trainables.train as tt  # in the worker: the real module, with the real tune_trainable

        first_attempt = tune.get_checkpoint() is None
        real_train = tt.train

        def train(cfg, *, report, **kwargs):
            def faulty_report(metrics, state):
                if raise_at is not None and first_attempt and metrics["epoch"] == raise_at:
                    if cfg["arch"] in corrupt.get("archs", ()):
                        _truncate_newest_checkpoint(corrupt["experiment"], cfg["arch"])
                    raise RuntimeError(f"injected fault: trial raised at epoch {raise_at}")
                report(metrics, state)
                if hold_after is not None and first_attempt and metrics["epoch"] == hold_after:
                    import os
                    import time

                    while not (release and os.path.exists(release)):  # until released, or Tune stops (kills) it
                        time.sleep(0.2)

            return real_train(cfg, report=faulty_report, **kwargs)

        limits = resource.getrlimit(resource.RLIMIT_AS)
        tt.train = train
        try:
            if cap_mb is not None:
                resource.setrlimit(resource.RLIMIT_AS, (_address_space() + int(cap_mb * 2**20), limits[1]))
            tt.tune_trainable(config, data=data)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, limits)  # the actor may be reused for another trial
            tt.train = real_train

    return tune_trainable


def fill_the_disk_on_first_persist() -> None:
    import errno

    from search.scheduler import PerArchASHA

    real = PerArchASHA.persist
    done = []

    def persist(self):
        if not done and self.state_path is not None:
            done.append(True)
            raise OSError(errno.ENOSPC, "No space left on device", str(self.state_path))
        real(self)

    PerArchASHA.persist = persist


if __name__ == "__main__":
    import trainables.train

    faults = json.loads(sys.argv[1])
    trainables.train.tune_trainable = make_trainable(faults)
    if faults.get("driver_enospc"):
        fill_the_disk_on_first_persist()
    from search.cli import run

    sys.exit(run(sys.argv[2:]))
