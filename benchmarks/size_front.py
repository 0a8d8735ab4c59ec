"""Size-aware search at full scale (issue 11): MO-TPE + MO-ASHA against random + MO-ASHA at one epoch budget.

Report 003's modified_net with its size knobs in the long-horizon space (``spaces/reproduce/size/modified_net.yaml``:
width 0.25-2, kernel 3/5, max/avg pooling, with SGD-Nesterov, BatchNorm, augmentation and cosine fixed), objectives
``val_accuracy:max,params:min``. For each sampler and seed, one search: ``--num-samples`` trials of at most
``--max-epochs`` epochs, MO-ASHA rungs (grace ``--grace-period``, eta 3) and the same per-search ``--epoch-budget``
(MO-ASHA stops what the budget cannot pay), so the samplers are compared at equal epochs. Then:

* the hypervolume of every search's completed trials at one reference point common to all of them
  (``analysis.pareto.compare``), mean and 95% CI per sampler;
* the front of all the searches together;
* the issue's targets: from that front, the most accurate member with <= 35,730 parameters (ModifiedNet's size) and
  the most accurate with <= 17,865, each retrained ``--repeats`` seeds x ``--final-epochs`` epochs on train+val and
  scored once on the test split (``cifar-tune evaluate --trials``).

Resumable: rerun the same command and it keeps finished searches and saved test runs, resumes an unfinished search,
and adds wall time across invocations. Writes ``STORAGE/size_front.json`` and prints the tables; ``--publish`` also
copies the record to ``docs/results/size_front.json``.

    python -m benchmarks.size_front --storage /tmp/runs/size          # full data: ~2 h of search on 2 CPUs
    python -m benchmarks.size_front --smoke --storage /tmp/size-smoke  # 300 images, 1-2 epochs (CI)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, data_dir, machine
from trainables.objectives import DEFAULT_RANKING, RANKINGS

ARCH = "modified_net"
SPACE = REPO / "spaces" / "reproduce" / "size" / "modified_net.yaml"
OBJECTIVES = [["val_accuracy", "max"], ["params", "min"]]
TARGETS = ((35_730, 0.728), (17_865, 0.70))  # (at most this many params, at least this test accuracy): issue 11
STATE = "size_front.json"


def searches(args) -> list[dict]:
    return [{"sampler": s, "seed": k, "name": f"size-{s}-s{k}"} for s in args.samplers.split(",")
            for k in range(args.seeds)]


def run_one(args, run: dict, fixed: dict, state: dict) -> None:
    from search.reproduce import search_done, search_epochs
    from search.spec import ExperimentSpec
    from search.tuner import run_search
    from trainables.experiment import SPEC_FILE, write_json

    spec = ExperimentSpec(archs=[ARCH], num_samples=args.num_samples, max_epochs=args.max_epochs,
                          grace_period=args.grace_period, reduction_factor=3, sampler=run["sampler"],
                          seed=run["seed"], objectives=OBJECTIVES, epoch_budget=args.epoch_budget, fixed=fixed,
                          rung_ranking=args.rung_ranking,
                          space_files={ARCH: str(SPACE)}, storage=args.storage, name=run["name"])
    exp = Path(spec.experiment_dir)
    record = state["searches"].setdefault(run["name"], {**run, "wall_seconds": 0.0})
    if record.get("done"):
        print(f"size_front: {run['name']}: finished earlier, kept", flush=True)
        return
    resume = (exp / SPEC_FILE).exists()
    print(f"size_front: {run['name']}: {spec.num_samples} trials x <= {spec.max_epochs} epochs, budget "
          f"{spec.epoch_budget} epochs{' [resumed]' if resume else ''}", flush=True)
    start = time.monotonic()
    try:
        run_search(spec, resume=resume)
    finally:
        record["wall_seconds"] += time.monotonic() - start
        write_json(Path(args.storage) / STATE, state)
    if not search_done(exp, spec.num_samples):
        raise SystemExit(f"size_front: the search {run['name']} ended unfinished; run the same command again")
    record.update(done=True, epochs=search_epochs(exp), experiment=str(exp))
    write_json(Path(args.storage) / STATE, state)


def summarise(args, state: dict) -> dict:
    """Hypervolumes at one reference point, per sampler mean and CI, the joint front, the members to test."""
    from analysis.load import load_trials
    from analysis.pareto import compare, front, hypervolume_at_epoch, member_record
    from analysis.stats import mean_ci

    done = [r for r in state["searches"].values() if r.get("done")]
    rows = compare([r["experiment"] for r in done])
    trials = {r["experiment"]: load_trials(r["experiment"]) for r in done}  # read once: first rung and joint front
    by_exp = {r["experiment"]: r for r in done}
    for row in rows:  # normalised: the share of the box from (accuracy 1, 0 params) to the reference point
        row.update(epochs=by_exp[row["experiment"]]["epochs"],
                   wall_seconds=round(by_exp[row["experiment"]]["wall_seconds"]),
                   normalised=row["hypervolume"] / row["reference"][1])
        # Equal fidelity: every trial (stopped ones too) at the first rung, which all of them trained to.
        at = hypervolume_at_epoch(trials[row["experiment"]], OBJECTIVES, args.grace_period, row["reference"])
        row["at_first_rung"] = {**at, "normalised": at["hypervolume"] / row["reference"][1]}
    samplers = {}
    for s in dict.fromkeys(r["sampler"] for r in rows):
        mine = [r for r in rows if r["sampler"] == s]
        samplers[s] = {"hypervolume": mean_ci([r["hypervolume"] for r in mine]),
                       "normalised": mean_ci([r["normalised"] for r in mine]),
                       "at_first_rung": mean_ci([r["at_first_rung"]["normalised"] for r in mine]),
                       "epochs": [r["epochs"] for r in mine], "seeds": [r["seed"] for r in mine]}
    pool = []
    for r in done:
        for t in trials[r["experiment"]]:
            pool.append({**t, "experiment": r["experiment"], "sampler": r["sampler"], "seed": r["seed"]})
    joint = [{**member_record(t), "experiment": t["experiment"], "sampler": t["sampler"], "seed": t["seed"]}
             for t in front(pool, OBJECTIVES)]
    joint.sort(key=lambda m: m["params"])
    picks = []
    for cap, goal in (TARGETS if not args.smoke else ((10 ** 9, 0.0),)):  # smoke: any member, to run the test step
        fitting = [m for m in joint if m["params"] <= cap]
        best = max(fitting, key=lambda m: m["val_accuracy"], default=None)
        picks.append({"max_params": cap, "target_test_accuracy": goal, "member": best})
    return {"reference": rows[0]["reference"] if rows else None, "searches": rows, "samplers": samplers,
            "front": joint, "targets": picks}


def test_runs(args, summary: dict, state: dict) -> None:
    """Each target's member retrained on as many train+val images as report 003's final model saw (40,000: the fair
    protocol), ``repeats`` seeds, scored once on the test split (a ledgered use); the verdict is read from the CI."""
    from analysis.evaluate import evaluate_experiment
    from analysis.stats import verdict
    from trainables.presets import get_preset

    images = args.train_images or get_preset("report003").train_images
    for pick in summary["targets"]:
        m = pick["member"]
        if m is None:
            continue
        print(f"size_front: test runs of {m['trial_id']} ({m['params']:,} params, val {m['val_accuracy']:.4f}): "
              f"{args.repeats} seeds x {args.final_epochs} epochs on {images:,} train+val images", flush=True)
        start = time.monotonic()
        record = evaluate_experiment(m["experiment"], trials=[m["trial_id"]], repeats=args.repeats,
                                     train_on="trainval", epochs=args.final_epochs, address="local",
                                     progress=lambda line: print(line, flush=True), train_images=images)
        state["test_wall_seconds"] = state.get("test_wall_seconds", 0.0) + time.monotonic() - start
        result = record["results"][0]
        pick["test"] = {k: result[k] for k in ("test_accuracy", "weighted_f1")}
        pick["test"]["per_seed"] = [r["test_accuracy"] for r in result["runs"]]
        pick["test"]["seeds"] = result["seeds"]
        pick["test"]["train_images"] = result.get("train_images")
        pick["test"]["test_split"] = record["test_split"]["nets"].get(result["arch"])
        pick["verdict"] = verdict(result["test_accuracy"], pick["target_test_accuracy"])


def _verdict_cell(pick: dict) -> str:
    """The CI verdict; a record from before verdicts has only the mean's 'met', recomputed here from its CI."""
    from analysis.stats import verdict

    return pick.get("verdict") or verdict(pick["test"]["test_accuracy"], pick["target_test_accuracy"])


def markdown(record: dict) -> str:
    from analysis.tables import fmt_ci

    s = record["summary"]
    ref = s["reference"]
    lines = [f"Reference point (common to all searches): accuracy {ref[0]}, {ref[1]:,.0f} params; hypervolume "
             f"normalised by the box from (accuracy 1, 0 params) to it.", "",
             ("| sampler | seed | completed | front | hypervolume (normalised) | at the first rung: trials, "
              "hypervolume | epochs (budget) | wall |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["searches"]:
        first = r["at_first_rung"]
        lines.append(f"| {r['sampler']} | {r['seed']} | {r['completed']} | {r['front']} | {r['normalised']:.4f} | "
                     f"{first['trials']} at epoch {first['epoch']}, {first['normalised']:.4f} | "
                     f"{r['epochs']} ({record['settings']['epoch_budget']}) | {r['wall_seconds'] / 60:.0f} min |")
    lines += ["", "| sampler | normalised hypervolume: mean ± 95% CI (seeds) | at the first rung, all trials |",
              "|---|---:|---:|"]
    for name, v in s["samplers"].items():
        lines.append(f"| {name} | {fmt_ci(v['normalised'])} ({v['normalised']['n']}) | "
                     f"{fmt_ci(v['at_first_rung'])} ({v['at_first_rung']['n']}) |")
    lines += ["", "| joint front: params | val accuracy | width | kernel | pool | sampler, seed |",
              "|---:|---:|---:|---:|---|---|"]
    for m in s["front"]:
        c = m["config"]
        lines.append(f"| {m['params']:,} | {m['val_accuracy']:.4f} | {c.get('width')} | {c.get('kernel')} | "
                     f"{c.get('pool')} | {m['sampler']}, {m['seed']} |")
    lines += ["", "| target | member (params, val acc) | test accuracy: mean ± 95% CI (per seed) | verdict (95% CI) |",
              "|---|---|---:|---|"]
    for p in s["targets"]:
        m, t = p["member"], p.get("test")
        if m is None:
            lines.append(f"| <= {p['max_params']:,} params, >= {p['target_test_accuracy']} | none on the front | "
                         f"| no |")
            continue
        acc = t["test_accuracy"] if t else None
        test = (f"{fmt_ci(acc)} ({', '.join(f'{v:.4f}' for v in t['per_seed'])})" if acc else "not run")
        lines.append(f"| <= {p['max_params']:,} params, >= {p['target_test_accuracy']} | {m['trial_id']} "
                     f"({m['params']:,}, {m['val_accuracy']:.4f}) | {test} | "
                     f"{_verdict_cell(p) if t else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--storage", required=True, help="where the searches and the record live (outside the repo)")
    p.add_argument("--samplers", default="tpe,random")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--max-epochs", type=int, default=18,
                   help="grace x eta^k, so the last rung (6) leaves a full step; at 20 (the first full-scale run) a "
                        "rung at 18 stopped trials 2 epochs before they would have completed")
    p.add_argument("--grace-period", type=int, default=2)
    p.add_argument("--epoch-budget", type=int, default=100, help="per search: what MO-ASHA may spend")
    p.add_argument("--rung-ranking", choices=RANKINGS, default=None,
                   help="MO-ASHA's order within a rung's front (default: hypervolume for a new storage, what the "
                        "storage's searches used for an old one; crowding was the first full-scale run's)")
    p.add_argument("--repeats", type=int, default=3, help="test runs per target member")
    p.add_argument("--final-epochs", type=int, default=50)
    p.add_argument("--train-images", type=int, default=None,
                   help="images per test run (default: report 003's final model's, 40,000)")
    p.add_argument("--no-test", action="store_true", help="searches and hypervolumes only")
    p.add_argument("--smoke", action="store_true", help="300 images, 3 trials of <= 2 epochs, 1 seed, 1 test run")
    p.add_argument("--publish", action="store_true", help="also write docs/results/size_front.json")
    args = p.parse_args(argv)
    fixed = {"data_dir": str(Path(data_dir(args.data_dir)).resolve())}
    if args.smoke:
        args.seeds, args.num_samples, args.max_epochs, args.grace_period = 1, 3, 2, 1
        args.epoch_budget, args.repeats, args.final_epochs, args.train_images = 5, 1, 1, 300
        fixed.update(subset=300, val_size=100, latency_batch=8)
    from trainables.experiment import write_json

    root = Path(args.storage)
    root.mkdir(parents=True, exist_ok=True)
    path = root / STATE
    state = json.loads(path.read_text()) if path.exists() else {"searches": {}}
    again = " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.size_front", *sys.argv[1:]])
    from search.moasha import LEGACY_RANKING

    used = state.get("settings", {}).get("rung_ranking", LEGACY_RANKING if state["searches"] else None)
    if used and args.rung_ranking and args.rung_ranking != used:
        p.error(f"--rung-ranking {args.rung_ranking}: the searches in {root} were ranked by {used}; "
                f"use another --storage")
    args.rung_ranking = args.rung_ranking or used or DEFAULT_RANKING
    state.setdefault("commands", []).append({"command": again,
                                            "at": dt.datetime.now().isoformat(timespec="seconds")})
    state["settings"] = {"arch": ARCH, "space": str(SPACE.relative_to(REPO)), "objectives": OBJECTIVES,
                         "samplers": args.samplers.split(","), "seeds": args.seeds, "num_samples": args.num_samples,
                         "max_epochs": args.max_epochs, "grace_period": args.grace_period, "reduction_factor": 3,
                         "epoch_budget": args.epoch_budget, "rung_ranking": args.rung_ranking, "repeats": args.repeats,
                         "final_epochs": args.final_epochs, "fixed": fixed, "smoke": args.smoke}
    from search.tuner import SearchInterrupted, interrupted_exit

    try:
        for run in searches(args):
            run_one(args, run, fixed, state)
        state["summary"] = summarise(args, state)
        if not args.no_test:
            test_runs(args, state["summary"], state)
    except (SearchInterrupted, KeyboardInterrupt) as e:  # as cifar-tune reproduce: one line, the command to continue
        return interrupted_exit(e, "size_front", "finished searches and test runs are saved", again)
    state["machine"] = machine()
    from search.reproduce import JPEG_CAVEAT

    state["caveat"] = JPEG_CAVEAT if "jpeg" in fixed["data_dir"].lower() else ""
    state["written"] = dt.datetime.now().isoformat(timespec="seconds")
    write_json(path, state)
    print(markdown(state))
    if args.publish and not args.smoke:
        write_json(REPO / "docs" / "results" / "size_front.json", state)
    print(f"size_front: record in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
