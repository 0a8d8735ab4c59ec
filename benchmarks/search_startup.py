"""Search start-up: how long until every slot of the machine runs a trial, with trials started one at a time (Tune's
default for a searcher of its own) and together (cifar-tune's cap, ``search.tuner.concurrency``).

Tune asks a custom searcher for its next trial only once the last trial's actor runs, so on a machine of k slots the
k-th trial starts after k-1 worker processes have each started and imported torch in turn. With a cap of k trials
(Tune's ConcurrencyLimiter), Tune creates them together. Both ways run the same tiny search (k trials of origin_net,
one epoch on 128 images) on one Ray, alternating, ``--repeats`` times; Tune's old behaviour is had by setting
``TUNE_MAX_PENDING_TRIALS_PG=1``, which Tune reads before the cap. A first search, not counted, warms what only the
first pays (the array cache read, the searcher's imports). Reported: when each trial starts after
``run_search`` is called, and the search's wall time (medians over the repeats, every value in the record).
Writes docs/results/search_startup.json and the section "Search start-up" of docs/benchmarks.md.

    python -m benchmarks.search_startup            # ~5 minutes on 2 CPU cores; run it on a quiet machine
    python -m benchmarks.search_startup --smoke    # one search each way, no warm-up, no doc update (CI)
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import data_dir, machine, save_record

MODES = {"one at a time": "1", "together": None}  # TUNE_MAX_PENDING_TRIALS_PG for each; None: unset (our cap)
WORKLOAD = {"subset": 128, "val_size": 100, "optimizer": "adam", "latency_batch": 0}


def timed_search(storage: str, name: str, trials: int, data: str, pending: str | None) -> dict:
    from ray.tune import Callback

    from search.spec import ExperimentSpec
    from search.tuner import run_search

    starts: list[float] = []

    class Starts(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            starts.append(time.perf_counter())

    spec = ExperimentSpec(archs=["origin_net"], num_samples=trials, max_epochs=1, scheduler="none",
                          fixed={**WORKLOAD, "data_dir": data}, storage=storage, name=name)
    before = os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)
    if pending is not None:
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = pending
    try:
        t0 = time.perf_counter()
        run_search(spec, callbacks=[Starts()])
        wall = time.perf_counter() - t0
    finally:
        os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)
        if before is not None:
            os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = before
    return {"starts": [round(s - t0, 2) for s in starts], "wall": round(wall, 2)}


def summary(runs: dict) -> dict:
    """mode -> medians over the repeats of each trial's start and of the wall time."""
    out = {}
    for mode, rows in runs.items():
        k = min(len(r["starts"]) for r in rows)
        out[mode] = {"starts": [statistics.median(r["starts"][i] for r in rows) for i in range(k)],
                     "wall": statistics.median(r["wall"] for r in rows), "repeats": len(rows)}
    return out


def markdown(record: dict) -> str:
    s = record["summary"]
    k = record["settings"]["trials"]
    lines = [f"{record['machine']}; one Ray for all searches (ray.init {record['ray_init_s']:.1f} s, not counted); "
             f"{k} trials of origin_net (1 epoch, 128 images) per search, as many as the machine holds; medians of "
             f"{record['settings']['repeats']} searches each way, alternating", "",
             "| trials started | first trial runs after (s) | last trial runs after (s) | search wall (s) |",
             "|---|---:|---:|---:|"]
    for mode, m in s.items():
        lines.append(f"| {mode} | {m['starts'][0]:.1f} | {m['starts'][-1]:.1f} | {m['wall']:.1f} |")
    one, together = s["one at a time"], s["together"]
    sooner = one["starts"][-1] - together["starts"][-1]
    lines += ["", f"Starting the trials together, the last of the {k} runs {sooner:.1f} s sooner and the search ends "
              f"{one['wall'] - together['wall']:.1f} s sooner (medians). The gap is the "
              "start of a worker process (which imports torch) per trial after the first; on a machine of k slots "
              "it grows with k. Per-search values: docs/results/search_startup.json. Command: "
              "`python -m benchmarks.search_startup`."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=int, default=4, help="searches each way (even: each way goes first as often)")
    p.add_argument("--smoke", action="store_true", help="one repeat, no doc update")
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit(f"search_startup: --repeats must be >= 1, got {args.repeats}")
    import ray

    from search.spec import ExperimentSpec
    from search.tuner import init_ray

    data = str(Path(data_dir(args.data_dir)).resolve())
    repeats = 1 if args.smoke else args.repeats
    t0 = time.perf_counter()
    init_ray(ExperimentSpec(archs=["origin_net"]))
    ray_init = time.perf_counter() - t0
    trials = max(2, int(ray.cluster_resources().get("CPU", 1)))
    runs: dict = {mode: [] for mode in MODES}
    try:
        with tempfile.TemporaryDirectory() as storage:
            if not args.smoke:
                timed_search(storage, "warm-up", trials, data, None)
            for r in range(repeats):
                order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
                for mode in order:
                    row = timed_search(storage, f"r{r}-{mode.replace(' ', '-')}", trials, data, MODES[mode])
                    runs[mode].append(row)
                    print(f"search_startup: repeat {r}, {mode}: trials start at {row['starts']} s, "
                          f"wall {row['wall']} s", flush=True)
    finally:
        ray.shutdown()
    record = {"machine": machine(), "ray_init_s": round(ray_init, 2),
              "settings": {"trials": trials, "repeats": repeats, "arch": "origin_net", "epochs": 1, **WORKLOAD},
              "runs": runs, "summary": summary(runs)}
    out = Path(tempfile.gettempdir()) / "search_startup"
    out.mkdir(exist_ok=True)
    save_record(out, "search_startup.json", record, markdown(record), "Search start-up", publish=not args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
