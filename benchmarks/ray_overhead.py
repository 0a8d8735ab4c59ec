"""Ray Tune overhead: the same trials through cifar-tune and through a plain in-process Optuna loop.

For short (~1 s) and long (~30 s) trials of origin_net, both ways run one trial at a time and the same number of
trials; we report wall time ÷ Σ trial time (trial time = the trainable's own time, Tune's ``time_total_s`` or the
wall time of ``train()`` in the plain loop). Ray's own start-up (``ray.init``) is reported apart. cifar-tune's wall
time is split in two: the search's one-off start-up (from ``run_search`` to the first trial running: reading the
array cache, building the Tuner, putting the data in the object store, starting the trial's worker process, which
imports torch) and the steady state after it, whose excess over the trials' own time is the per-trial overhead
(searcher ask/tell on the Optuna database, checkpoint and result files, reusing the actor for the next trial).
Writes the section "Ray overhead" of docs/benchmarks.md.

    python -m benchmarks.ray_overhead            # ~10 minutes on 2 CPU cores
    python -m benchmarks.ray_overhead --smoke    # a few trials, no doc update (CI)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import data_dir, machine, publish, scratch_storage

SHORT = {"subset": 5000, "val_size": 500, "batch_size": 128}  # epochs=1: about a second per trial (2-core CPU)
LONG = {"subset": 36000, "val_size": 1000, "batch_size": 128}  # epochs=3: about half a minute per trial (2-core CPU)


def plain_optuna(ds, fixed: dict, epochs: int, n: int) -> tuple[float, float]:
    import optuna

    from spaces import load_space
    from trainables.train import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("origin_net")
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    trial_time = 0.0
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        config = {**space.sample_config(trial), **fixed, "epochs": epochs}
        s = time.perf_counter()
        final = train(config, report=lambda m, state: None, data=ds)
        trial_time += time.perf_counter() - s
        study.tell(trial, final["val_accuracy"])
    return time.perf_counter() - t0, trial_time


def first_trial_timer():
    """A Tune callback that notes when the first trial starts running (time.perf_counter)."""
    from ray.tune import Callback

    class FirstTrial(Callback):
        started: float | None = None

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.started is None:
                self.started = time.perf_counter()

    return FirstTrial()


def through_cifar_tune(fixed: dict, epochs: int, n: int, storage: str, name: str) -> dict:
    from search.spec import ExperimentSpec
    from search.tuner import run_search

    spec = ExperimentSpec(archs=["origin_net"], num_samples=n, max_epochs=epochs, scheduler="none",
                          max_concurrent=1, fixed=dict(fixed), storage=storage, name=name)
    timer = first_trial_timer()
    t0 = time.perf_counter()
    results = run_search(spec, callbacks=[timer])
    end = time.perf_counter()
    return {"wall": end - t0, "trial_time": sum(r.metrics["time_total_s"] for r in results),
            "startup": timer.started - t0, "steady_wall": end - timer.started}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    from search.spec import ExperimentSpec
    from search.tuner import init_ray
    from trainables.data import load_dataset

    data = data_dir(args.data_dir)
    ds = load_dataset(data, download=False)
    cases = [("short", SHORT, 1, 20), ("long", LONG, 3, 8)]
    if args.smoke:
        cases = [("short", {**SHORT, "subset": 128, "val_size": 100}, 1, 2)]
    t0 = time.perf_counter()
    init_ray(ExperimentSpec(archs=["origin_net"]))
    ray_start = time.perf_counter() - t0
    rows = []
    with scratch_storage() as storage:
        for label, fixed, epochs, n in cases:
            fixed = {**fixed, "data_dir": str(Path(data).resolve()), "optimizer": "adam"}
            pw, pt = plain_optuna(ds, fixed, epochs, n)
            tune = through_cifar_tune(fixed, epochs, n, storage, f"bench-{label}")
            rt = tune["trial_time"]
            rows.append({"trials": f"{n} x {label}", "mean_trial_s": rt / n, "plain_ratio": pw / pt,
                         "tune_ratio": tune["wall"] / rt, "startup_s": tune["startup"],
                         "steady_ratio": tune["steady_wall"] / rt,
                         "per_trial_overhead_s": (tune["steady_wall"] - rt) / n,
                         "tune_vs_plain": (tune["wall"] / rt) / (pw / pt),
                         "steady_vs_plain": (tune["steady_wall"] / rt) / (pw / pt), "plain_wall": pw,
                         "tune_wall": tune["wall"]})
    print(json.dumps(rows, indent=1))
    lines = [f"{machine()}; one trial at a time both ways; Ray start-up (ray.init, not counted below): "
             f"{ray_start:.1f} s", "",
             "| trials | mean trial s (Tune) | plain Optuna wall ÷ Σ trial | cifar-tune wall ÷ Σ trial | "
             "of which search start-up s | cifar-tune after start-up ÷ Σ trial | per-trial overhead s | "
             "cifar-tune ÷ plain: whole search | after start-up |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['trials']} | {r['mean_trial_s']:.2f} | {r['plain_ratio']:.3f} | {r['tune_ratio']:.3f} | "
                     f"{r['startup_s']:.1f} | {r['steady_ratio']:.3f} | {r['per_trial_overhead_s']:.3f} | "
                     f"{r['tune_vs_plain']:.2f}x | {r['steady_vs_plain']:.2f}x |")
    publish("Ray overhead", lines, "ray_overhead", args.smoke,
            note="Targets (issue 3): cifar-tune wall ÷ Σ trial ≤ 1.05 for the long trials; ≤ 1.5x plain Optuna for "
                 "the short ones. The search start-up is paid once per search (and once more per node for its first "
                 "worker); the per-trial overhead is paid by every trial.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
