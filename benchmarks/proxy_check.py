"""Does a search on a proxy rank configs as the full data would? The check a proxy search owes (issue 21).

A search may train on a reduced-fidelity proxy (``subset``: the first N training images, e.g. report 002's
ghasemi_net on 10,000 of 45,000) only if it shows that the proxy ranks like the full data. This takes a finished
proxy search, picks ``--trials`` of one net's trials spread evenly over the search's ranking at epoch ``--epochs``
(by default its first rung, which every trial reached), trains each again on all the training images (``--against``
N: the first N) with the same config, seed and validation split, its schedule over the same epochs, stopped after
``--epochs``, and compares the two rankings: Kendall's tau, whether the proxy's best of them is the full data's
best, and how many of the proxy's top third are the full data's top third.

Validation split only: the test split is never loaded. Each retrain is a unit (``STORAGE/units/<trial>.json``; in
flight, its state after every epoch in ``STORAGE/checkpoint_<trial>/``, continued by the same command), so
``benchmarks.carry`` and ``benchmarks.long_runs`` carry it across machines. The record, with its command, code,
device and versions, goes to ``docs/results/NAME.json``; ``benchmarks.publish`` writes its table where
docs/results.md has its markers.

    python -m benchmarks.proxy_check /tmp/runs/fair/reproduce-report002/ghasemi_net --record report002-proxy \\
        --storage /tmp/runs/proxy-report002
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shlex
import sys
import time
from pathlib import Path

from benchmarks.common import data_dir, machine
from benchmarks.curves import RESULTS
from benchmarks.curves import run as train_curve

UNITS = "units"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="a finished search that trained on a proxy (a subset of the training images)")
    p.add_argument("--record", required=True, help="the record's name in docs/results, e.g. report002-proxy")
    p.add_argument("--storage", required=True, help="the retrains' units and states; the same command continues")
    p.add_argument("--arch", default=None, help="the net to check (default: the experiment's only one)")
    p.add_argument("--trials", type=int, default=6, help="how many of its trials to retrain (>= 3; default 6)")
    p.add_argument("--epochs", type=int, default=None, help="compare at this epoch (default: the first rung)")
    p.add_argument("--against", type=int, default=0,
                   help="the full data: the first N training images (default 0: all of them)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)  # tests write elsewhere
    return p, p.parse_args(argv)


class CheckError(Exception):
    """Bad input: one line, exit 2, before anything trains."""


def plan(args) -> dict:
    """What to retrain, from the experiment: {arch, epochs, proxy_images, picks: [trial, ...]}, or CheckError."""
    from analysis.load import ExperimentError, load_spec, load_trials

    try:
        spec = load_spec(args.experiment)["spec"]
        trials = load_trials(args.experiment)
    except ExperimentError as e:
        raise CheckError(str(e)) from None
    proxy = int(spec["fixed"].get("subset") or 0)
    if not proxy:
        raise CheckError(f"{args.experiment}: its search trained on all the training images (no subset): "
                         f"not a proxy search, nothing to check")
    if args.against and args.against <= proxy:
        raise CheckError(f"--against {args.against}: not more than the proxy's {proxy:,} images")
    archs = spec["archs"]
    arch = args.arch or (archs[0] if len(archs) == 1 else None)
    if arch not in archs:
        raise CheckError(f"--arch {args.arch}: not a net of this search ({', '.join(archs)})" if args.arch else
                         f"the search has several nets ({', '.join(archs)}): name one with --arch")
    epochs = args.epochs or int(spec["grace_period"])
    if epochs < 1 or epochs > int(spec["max_epochs"]):
        raise CheckError(f"--epochs {epochs}: outside the search's 1..{spec['max_epochs']}")
    reached = []
    for t in trials:
        value = next((h.get("val_accuracy") for h in t["history"] if h.get("epoch") == epochs), None)
        if t["arch"] == arch and value is not None and math.isfinite(value):
            reached.append({"trial_id": t["trial_id"], "config": t["config"], "proxy_val": float(value)})
    if args.trials < 3:
        raise CheckError(f"--trials {args.trials}: at least 3 (a ranking of fewer says nothing)")
    if len(reached) < args.trials:
        raise CheckError(f"--trials {args.trials}: only {len(reached)} of {arch}'s trials reached epoch {epochs}")
    reached.sort(key=lambda r: (-r["proxy_val"], r["trial_id"]))
    n = len(reached)
    where = sorted({round(i * (n - 1) / (args.trials - 1)) for i in range(args.trials)})  # best, worst, between
    return {"arch": arch, "epochs": epochs, "proxy_images": proxy, "trials_reached": n,
            "picks": [{**reached[i], "proxy_rank": i + 1} for i in where]}


def retrain(args, pick: dict, epochs: int, storage: Path) -> dict:
    """One unit: ``pick``'s config on the full training data, stopped after ``epochs``; saved, and kept if saved."""
    from trainables.experiment import write_json

    path = storage / UNITS / f"{pick['trial_id']}.json"
    if path.exists():
        return json.loads(path.read_text())
    config = {**pick["config"], "subset": args.against, "data_dir": data_dir(args.data_dir), "latency_batch": 0}
    started = time.monotonic()
    curve = train_curve(config, storage / f"checkpoint_{pick['trial_id']}", stop_after=epochs)
    unit = {"trial_id": pick["trial_id"], "config": {k: v for k, v in config.items() if k != "data_dir"},
            "proxy_val": pick["proxy_val"], "proxy_rank": pick["proxy_rank"],
            "epochs": epochs, "full_val": curve[epochs - 1]["val_accuracy"],
            "epoch_seconds": [c["epoch_seconds"] for c in curve],
            "seconds_this_run": round(time.monotonic() - started, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, unit)
    import shutil

    shutil.rmtree(storage / f"checkpoint_{pick['trial_id']}", ignore_errors=True)
    return unit


def agreement(units: list[dict]) -> dict:
    """Kendall's tau (and its p) between the proxy's and the full data's values; the best and the top third."""
    from scipy.stats import kendalltau

    proxy = [u["proxy_val"] for u in units]
    full = [u["full_val"] for u in units]
    tau = kendalltau(proxy, full)
    by_full = sorted(range(len(units)), key=lambda i: -full[i])
    by_proxy = sorted(range(len(units)), key=lambda i: -proxy[i])
    third = max(1, math.ceil(len(units) / 3))
    return {"kendall_tau": None if math.isnan(tau.statistic) else round(float(tau.statistic), 3),
            "p_value": None if math.isnan(tau.pvalue) else round(float(tau.pvalue), 4),
            "same_best": by_full[0] == by_proxy[0], "top_third": third,
            "top_third_shared": len(set(by_full[:third]) & set(by_proxy[:third])),
            "full_rank": {units[i]["trial_id"]: r + 1 for r, i in enumerate(by_full)}}


def main(argv=None) -> int:
    p, args = parse(argv)
    results, storage = Path(args.results), Path(args.storage).expanduser().resolve()
    try:
        if not results.is_dir() and results.resolve() != storage:  # the storage itself: made below
            raise CheckError(f"--results {args.results}: no such folder")
        if (results / f"{args.record}.json").exists():  # finished: the same command again changes nothing
            print(f"proxy_check: {results / args.record}.json is written already; nothing trained")
            return 0
        todo = plan(args)
        for pick in todo["picks"]:  # a unit kept from another setting would be compared as if it were this one
            path = storage / UNITS / f"{pick['trial_id']}.json"
            if path.exists():
                unit = json.loads(path.read_text())
                if (unit.get("epochs"), unit["config"].get("subset")) != (todo["epochs"], args.against):
                    raise CheckError(f"{path} was trained to epoch {unit.get('epochs')} on subset "
                                     f"{unit['config'].get('subset')}, not --epochs {todo['epochs']} --against "
                                     f"{args.against}: use another --storage")
    except CheckError as e:
        print(f"proxy_check: error: {e}", file=sys.stderr)
        return 2
    (storage / UNITS).mkdir(parents=True, exist_ok=True)  # a benchmark's storage from the start (benchmarks.carry)
    again = " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.proxy_check", *(argv or sys.argv[1:])])
    print(f"proxy_check: {todo['arch']}: {len(todo['picks'])} of the {todo['trials_reached']} trials that reached "
          f"epoch {todo['epochs']} on the proxy's {todo['proxy_images']:,} images, retrained on "
          f"{'all the' if not args.against else f'the first {args.against:,}'} training images", flush=True)
    units = []
    try:
        for pick in todo["picks"]:
            unit = retrain(args, pick, todo["epochs"], storage)
            print(f"proxy_check: {pick['trial_id']} (proxy rank {pick['proxy_rank']}): proxy {unit['proxy_val']:.4f}, "
                  f"full {unit['full_val']:.4f}", flush=True)
            units.append(unit)
    except KeyboardInterrupt as e:
        from search.tuner import interrupted_exit

        return interrupted_exit(e, "proxy_check", "finished retrains are saved (one in flight goes on from its last "
                                "epoch)", again)
    from trainables.train import code_version

    stats = agreement(units)
    for u in units:
        u["full_rank"] = stats["full_rank"][u["trial_id"]]
    train_images = units[0]["config"].get("subset") or None
    record = {"proxy_check": {k: v for k, v in stats.items() if k != "full_rank"},
              "experiment": str(Path(args.experiment).resolve()), "arch": todo["arch"], "epochs": todo["epochs"],
              "proxy_images": todo["proxy_images"], "full_images": train_images or "all",
              "trials_reached": todo["trials_reached"], "units": units, "command": again, "code": code_version(),
              "machine": machine(), "written": dt.datetime.now().isoformat(timespec="seconds")}
    from trainables.experiment import write_json

    write_json(storage / "proxy_check.json", record)
    write_json(results / f"{args.record}.json", record)
    s = record["proxy_check"]
    print(f"proxy_check: Kendall tau {s['kendall_tau']} (p {s['p_value']}) over {len(units)} configs; the proxy's best "
          f"is {'' if s['same_best'] else 'not '}the full data's; top third shared {s['top_third_shared']} of "
          f"{s['top_third']}; record in {results / args.record}.json")
    return 0


if __name__ == "__main__":
    from search.tuner import stop_on_sigterm

    with stop_on_sigterm():  # SIGTERM (benchmarks.long_runs' stop) as Ctrl-C: the work saved, one line, exit 143
        raise SystemExit(main())
