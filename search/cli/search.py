"""``cifar-tune search``: a new search from its flags, or ``--resume`` of one (search.api runs the same)."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from search.cli.common import DiskFull, add_set, assignments, comma_list
from search.spec import (NAME, PLAN_SAMPLER, ExperimentSpec, SpecError, check_name_fits, refuse_blank_objectives,
                         resume_conflict)
from trainables.experiment import SPEC_FILE, disk_full_cause


# Options of `search` that are ExperimentSpec fields of the same name. Their parser default is None, so that one
# given can be told from one left out (which gets the spec's default): given with --resume, or with a --preset that
# sets it, a value is checked, never silently replaced.
SEARCH_FLAGS = ("num_samples", "max_epochs", "grace_period", "reduction_factor", "epoch_budget", "scheduler",
                "sampler", "seed", "max_concurrent", "cpus_per_trial", "gpus_per_trial", "max_failures",
                "rung_ranking")



def given_flags(args) -> dict:
    """The SEARCH_FLAGS given on the command line: field -> value."""
    return {f: getattr(args, f) for f in SEARCH_FLAGS if getattr(args, f, None) is not None}



def resume_flags(args, archs: list[str]) -> dict:
    """Everything a `search --resume` command line says about the search (field -> value as ExperimentSpec holds
    it; ``fixed``: the --set / --data-dir values given; ``archs``: the experiment's nets, each of which a --space
    would apply to), for search.spec.resume_conflict to compare with the experiment's own spec."""
    from trainables.objectives import ObjectiveError, parse_objectives

    given = given_flags(args)
    if args.arch:
        given["archs"] = comma_list(args.arch, "--arch")
    if args.preset:
        given["preset"] = args.preset
    if args.objectives is not None:
        refuse_blank_objectives(args.objectives)
        try:
            given["objectives"] = [list(o) for o in parse_objectives(args.objectives)]
        except ObjectiveError as e:
            raise SpecError(f"--objectives: {e}") from None
    for key in ("optuna_storage", "warm_start", "mlflow"):
        if getattr(args, key, None):
            given[key] = getattr(args, key)
    fixed = assignments(args.set)  # (validated, as parse_assignments does)
    if args.data_dir:
        fixed["data_dir"] = str(Path(args.data_dir).resolve())
    if fixed:
        given["fixed"] = fixed
    if args.space:
        given["space_files"] = {a: str(Path(args.space).resolve()) for a in archs}
    return given



def spec_from_args(args) -> ExperimentSpec:
    from search.presets import get_preset, grid_runs, tuned_plan
    fixed = assignments(args.set)
    if args.data_dir:
        fixed["data_dir"] = str(Path(args.data_dir).resolve())
    objectives = getattr(args, "objectives", None)
    mlflow = getattr(args, "mlflow", None)
    if mlflow is not None and not mlflow.strip():  # a value lost on the way (an empty shell variable)
        raise SpecError(f"--mlflow {mlflow!r}: empty; give a tracking URI such as http://127.0.0.1:5000")
    kw = dict(name=args.name or "", storage=args.storage or "", optuna_storage=args.optuna_storage or "",
              warm_start=args.warm_start or "", address=args.address or "", storage_is_shared=args.storage_is_shared,
              mlflow=mlflow or "",
              fixed=fixed, objectives=[] if objectives is None else objectives,  # "" is refused, not "none"
              **given_flags(args))
    archs = comma_list(args.arch, "--arch") or []
    if args.preset:
        if archs:
            raise SpecError("give --arch or --preset, not both")
        name, colon, mode = args.preset.partition(":")
        mode = mode or ("" if colon else "tuned")  # 'report000:' lost its mode on the way: refused, not guessed
        if mode not in ("grid", "tuned"):
            raise SpecError(f"--preset {args.preset!r}: mode must be grid or tuned, got {mode!r}")
        try:
            preset = get_preset(name)
        except ValueError as e:
            raise SpecError(f"--preset: {e}") from None
        archs = list(preset.archs)
        kw["preset"] = args.preset
        if mode == "grid":
            # The user's --set wins over the preset's settings and held-constant values (e.g. a smaller
            # val_size, a subset), but may not flatten a dimension the grid varies; epochs stay the rows' own
            # (ExperimentSpec refuses --set epochs).
            varied = sorted((set(preset.grid) | {k for r in preset.rows for k in r}) - {"arch", "epochs"})
            clash = [k for k in fixed if k in varied]
            if clash:
                raise SpecError(f"--set {clash[0]}=...: {clash[0]!r} is a dimension of preset {name}'s grid "
                                f"({', '.join(varied)}); run --preset {name}:tuned to search it, or use --arch")
            rows = [{**row, **fixed} for row in grid_runs(preset)]  # every grid point once per report seed
            # Each row keeps its own epochs (report 002's rows differ); max_epochs is the longest.
            kw.update(sampler="grid", scheduler="none", grid=rows,
                      max_epochs=max(r.get("epochs", preset.epochs) for r in rows), grace_period=1)
        # Run settings the grid and the search share (e.g. report 000's 10,000-image validation split);
        # the user's --set still wins.
        kw["fixed"] = {**getattr(preset, "settings", {}), **fixed}
        if mode == "tuned":
            plan = tuned_plan(preset)
            scheduler = kw.get("scheduler", "asha")
            if plan["epoch_budget"] and scheduler != "asha":  # refused here: the user never gave --epoch-budget
                raise SpecError(f"--scheduler {scheduler} with --preset {args.preset}: the preset's tuned plan spends "
                                f"an epoch budget ({plan['epoch_budget']} epochs per net) that only ASHA honours; "
                                f"leave --scheduler out, or use --arch to search with {scheduler}")
            kw.update(num_samples=plan["num_samples"], max_epochs=plan["max_epochs"],
                      grace_period=plan["grace_period"], reduction_factor=plan["reduction_factor"],
                      epoch_budget=plan["epoch_budget"], sampler=PLAN_SAMPLER)
        # The preset sets these: a different value given with it would be silently replaced, so it is refused.
        for key, value in given_flags(args).items():
            if key in kw and value != kw[key]:
                raise SpecError(f"--{key.replace('_', '-')} {value} with --preset {args.preset}: the preset sets "
                                f"{kw[key]} (see cifar-tune presets); use --arch to choose your own")
    if args.space:
        if len(archs) != 1 and not args.space.endswith(".yaml"):
            raise SpecError(f"--space {args.space!r}: expected a .yaml file")
        if not Path(args.space).is_file():
            raise SpecError(f"--space {args.space!r}: no such file")
        kw["space_files"] = {a: str(Path(args.space).resolve()) for a in archs}
    spec = ExperimentSpec(archs=archs, **kw)
    refuse_unused(given_flags(args), spec, "--scheduler" if args.scheduler is not None else
                  f"--preset {args.preset}" if spec.sampler == "grid" else "the default")
    return spec


def refuse_unused(given: dict, spec: ExperimentSpec, source: str) -> None:
    """Refuse (SpecError) a flag the user gave (``given``: field -> value, see given_flags) that ``spec``'s scheduler
    would ignore; ``source``: what chose the scheduler. Here, not in ExperimentSpec: a spec built by a plan
    (reproduce, a preset, a benchmark) carries every field's default, used or not."""
    s = spec.scheduler
    unused = {"reduction_factor": s in ("pbt", "none"), "grace_period": s in ("hyperband", "none"),
              "rung_ranking": not spec.objectives or s != "asha"}
    key = next((k for k in given if unused.get(k)), None)
    if key is None:
        return
    flag = f"--{key.replace('_', '-')} {given[key]:g}" if key != "rung_ranking" else f"--rung-ranking {given[key]}"
    if key == "rung_ranking":
        why = ("orders MO-ASHA's rungs, and there are none without --objectives" if not spec.objectives else
               f"orders MO-ASHA's rungs, and --scheduler {s} has none")
    else:
        chosen = f"--scheduler {s}" if source == "--scheduler" else f"{source} (--scheduler {s})"
        why = f"{chosen} does not use it"
    raise SpecError(f"{flag}: {why}; leave it out")



def search_spec(args) -> ExperimentSpec:
    """The experiment a `search` command line describes: a new one from its flags, or with ``--resume`` the one
    in --storage/--name, checked against the flags given again (never silently ignored)."""
    from search.spec import default_storage
    from search.tuner import spec_from_dir

    if not args.resume:
        return spec_from_args(args)
    if not args.name:
        raise SpecError("--resume needs the --name (and --storage) of the experiment to finish")
    storage = args.storage or default_storage()
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    if not NAME.match(args.name):
        raise SpecError(f"--name must be letters, digits, '_', '.', '-', got {args.name!r}")
    check_name_fits(args.name, storage, [])  # a name no folder can have: no such experiment, not ENAMETOOLONG
    # The experiment is the folder --storage/--name, wherever it was started (a copy resumes as itself).
    # --address (and --storage-is-shared) go in before the spec is validated, so a resume on a cluster gets
    # the same node-local-storage refusal as a new search.
    spec = spec_from_dir(f"{storage.rstrip('/')}/{args.name}",
                         **({"address": args.address} if args.address else {}),
                         **({"storage_is_shared": True} if args.storage_is_shared else {}))
    # A flag that defines the search, given again, must say what the experiment already is (never ignored).
    resume_conflict(spec.to_dict(), resume_flags(args, spec.archs), spec.experiment_dir)
    return spec



def cmd_search(args) -> int:
    from search.tuner import SearchInterrupted, interrupted_exit, run_search

    spec = search_spec(args)
    args.resume_command = resume_command(spec)  # for main's disk-full line
    args.experiment_dir = spec.experiment_dir
    try:
        results = run_search(spec, resume=args.resume)
    except SearchInterrupted as e:
        return interrupted_exit(e, "cifar-tune search", f"{e.unfinished} trial(s) unfinished, the experiment state "
                                "is saved", args.resume_command)
    except BaseException:  # a Ctrl-C or a full disk before a new search wrote its spec: nothing there to resume
        if not args.resume and not (Path(spec.experiment_dir) / SPEC_FILE).is_file():
            args.resume_command = None
            args.interrupted = "; nothing was written (the search had not started)"
        raise
    errors = [r.error for r in results if r.error is not None]
    full = next((c for c in map(disk_full_cause, errors) if c is not None), None)
    if full is not None:  # trials lost to a full disk: not a result, whatever the others did; --resume retries them
        raise DiskFull(full.filename or spec.experiment_dir, args.resume_command)
    finished = [r for r in results if r.error is None and (r.metrics or {}).get("status")]
    if not finished:
        first = last_line(errors[0]) if errors else "no trial ran"
        print(f"cifar-tune search: error: no trial finished ({len(errors)} of {len(results)} errored); the first "
              f"error: {first}", file=sys.stderr, flush=True)
        return 1
    print_best(results, spec)
    return 0



def resume_command(spec: ExperimentSpec) -> str:
    import shlex

    cmd = ["cifar-tune", "search", "--resume", "--name", spec.name, "--storage", spec.storage]
    if spec.address:
        cmd += ["--address", spec.address]
    return " ".join(shlex.quote(c) for c in cmd)



def last_line(error: BaseException) -> str:
    """The exception a trial raised, in one line (Ray wraps it in a long traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]



def print_best(results, spec: ExperimentSpec) -> None:
    from trainables.config import METRIC

    best: dict = {}
    for r in results:
        m = r.metrics or {}
        if METRIC not in m or m.get("status") == "diverged":
            continue
        arch = r.config.get("arch")
        if arch not in best or m[METRIC] > best[arch][0]:
            best[arch] = (m[METRIC], m.get("epoch"), r.config)
    print(f"\nbest configuration per net ({METRIC}, validation split):")
    for arch in spec.archs:
        if arch not in best:
            print(f"  {arch:<14} no finished trial")
            continue
        value, epoch, cfg = best[arch]
        print(f"  {arch:<14} {value:.4f} at epoch {epoch}: " + json.dumps({k: v for k, v in cfg.items()
                                                                          if k not in ("data_dir",)}, default=str))
    if spec.objectives:
        print(f"\nobjectives {', '.join(f'{m}:{d}' for m, d in spec.objectives)}: the Pareto front is in the report")
    print(f"\nexperiment: {spec.experiment_dir}\nnext: cifar-tune report {shlex.quote(str(spec.experiment_dir))}")



def add(sub) -> None:
    s = sub.add_parser("search", help="Optuna (random or TPE) + ASHA search on Ray Tune")
    s.add_argument("--arch", help="comma-separated nets; each gets its own study and the same budget")
    s.add_argument("--preset", help="NAME[:grid|:tuned] (see `cifar-tune presets`)")
    # The defaults of SEARCH_FLAGS are ExperimentSpec's (None here: see SEARCH_FLAGS).
    s.add_argument("--num-samples", type=int, help="trials per net (default 16)")
    s.add_argument("--max-epochs", type=int, help="default 8")
    s.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial (default 1)")
    s.add_argument("--reduction-factor", type=float, help="default 3")
    s.add_argument("--epoch-budget", type=int,
                   help="most epochs the search may train per net, enforced by ASHA's promotions (default 0: no cap)")
    s.add_argument("--scheduler", help="asha (the default: asynchronous successive halving; MO-ASHA with "
                                       "--objectives), hyperband (Ray's synchronous HyperBand: brackets, trials "
                                       "paused at milestones), pbt (Population Based Training: the bottom quarter "
                                       "copies the top's checkpoint every --grace-period epochs and perturbs lr, "
                                       "weight_decay, dropout, label_smoothing), or none; per net, its decisions "
                                       "kept in the experiment and put back on --resume (docs/schedulers.md)")
    s.add_argument("--sampler", help="tpe, tpe-plain, random, nsga2, or grid (default random: Optuna's seeded "
                                     "random sampling, whose picks TPE's did not beat at 22-36 trials per search, "
                                     "docs/benchmarks.md; tpe: Optuna's TPE, multivariate, which reproduce and "
                                     "--preset P:tuned use; tpe-plain: the same as tpe, a name kept for experiments "
                                     "started with it; grid: a report's own runs, which --preset P:grid sets)")
    s.add_argument("--objectives", help="multi-objective search, e.g. val_accuracy:max,params:min (metrics: "
                                        "val_accuracy val_loss params size_mb inference_latency_ms "
                                        "inference_images_per_s_b1 inference_images_per_s); early stopping by MO-ASHA")
    s.add_argument("--rung-ranking", help="MO-ASHA's order among a rung's non-dominated trials: hypervolume (each "
                                          "one's own share of the hypervolume; the default) or crowding "
                                          "(NSGA-II: the front's ends first)")
    s.add_argument("--seed", type=int, help="default 0")
    s.add_argument("--space", help="your own YAML search space (applies to every --arch)")
    add_set(s, "fix a config value in every trial")
    s.add_argument("--data-dir")
    s.add_argument("--name", help="experiment name (default: search-<timestamp>)")
    s.add_argument("--storage", help="results root: a directory, or a URL such as s3://bucket/path")
    s.add_argument("--optuna-storage", help="SQLAlchemy URL for the Optuna studies (default: sqlite in the experiment)")
    s.add_argument("--warm-start", help="earlier experiment dir (or Optuna URL) whose finished trials seed the studies")
    s.add_argument("--mlflow", metavar="URI", help="log every trial to this MLflow tracking server (params, per-epoch "
                                                   "metrics, outcome) and the spec; needs cifar-tune[mlflow]")
    s.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT (default: embedded Ray)")
    s.add_argument("--storage-is-shared", action="store_true", help="the --storage path is mounted on every node")
    s.add_argument("--max-concurrent", type=int, help="default 0: as many as resources allow")
    s.add_argument("--cpus-per-trial", type=float, help="default 0: 1 CPU")
    s.add_argument("--gpus-per-trial", type=float, help="fractional packs trials (default 0.25 with GPUs)")
    s.add_argument("--max-failures", type=int,
                   help="retries of a failing trial from its last checkpoint (default 1)")
    s.add_argument("--resume", action="store_true", help="finish the experiment --name in --storage")
    s.set_defaults(func=cmd_search)
