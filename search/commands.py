"""The search-side subcommands of ``cifar-tune``: search, presets, report (evaluate lives in analysis)."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from search.spec import (NAME, ExperimentSpec, SpecError, check_name_fits, refuse_blank_objectives,
                         resume_conflict)
from trainables.experiment import ExperimentLock, ExperimentLocked, disk_full_cause


def _csv(value: str, option: str = "--arch") -> list[str]:
    """'a,b' -> ['a', 'b']; an empty item ('a,,b', 'a,') is refused, not skipped: it is a typo, not a request."""
    items = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in items):
        raise SpecError(f"{option} {value!r}: an empty name in the comma-separated list")
    return items


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
    from trainables.config import ConfigError, parse_assignments, validate_value
    from trainables.objectives import ObjectiveError, parse_objectives

    given = given_flags(args)
    if args.arch:
        given["archs"] = _csv(args.arch)
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
    try:
        fixed = {k: validate_value(k, v) for k, v in parse_assignments(args.set).items()}
    except ConfigError as e:
        raise SpecError(f"--set {e}") from None
    if args.data_dir:
        fixed["data_dir"] = str(Path(args.data_dir).resolve())
    if fixed:
        given["fixed"] = fixed
    if args.space:
        given["space_files"] = {a: str(Path(args.space).resolve()) for a in archs}
    return given


def spec_from_args(args) -> ExperimentSpec:
    from search.presets import get_preset, grid_runs, tuned_plan
    from trainables.config import ConfigError, parse_assignments

    try:
        fixed = parse_assignments(args.set)
    except ConfigError as e:
        raise SpecError(f"--set {e}") from None
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
    archs = _csv(args.arch) if args.arch else []
    if args.preset:
        if archs:
            raise SpecError("give --arch or --preset, not both")
        name, _, mode = args.preset.partition(":")
        mode = mode or "tuned"
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
            kw.update(num_samples=plan["num_samples"], max_epochs=plan["max_epochs"],
                      grace_period=plan["grace_period"], reduction_factor=plan["reduction_factor"],
                      epoch_budget=plan["epoch_budget"])
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
    return ExperimentSpec(archs=archs, **kw)


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
    errors = [r.error for r in results if r.error is not None]
    full = next((c for c in map(disk_full_cause, errors) if c is not None), None)
    if full is not None:  # trials lost to a full disk: not a result, whatever the others did; --resume retries them
        raise DiskFull(full.filename or spec.experiment_dir, args.resume_command)
    finished = [r for r in results if r.error is None and (r.metrics or {}).get("status")]
    if not finished:
        first = _last_line(errors[0]) if errors else "no trial ran"
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


def _last_line(error: BaseException) -> str:
    """The exception a trial raised, in one line (Ray wraps it in a long traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


class DiskFull(Exception):
    """The storage is full; main prints one line with the path, its free space and what to run after."""

    def __init__(self, path, then: str = ""):
        self.path, self.then = Path(path), then
        super().__init__(str(path))


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


def cmd_presets(args) -> int:
    from search.presets import expand_grid, get_preset, grid_cost, list_presets, tuned_plan

    rows = []
    for name in list_presets():
        p = get_preset(name)
        rows.append({"name": name, "report": p.report, "archs": list(p.archs), "grid_points": len(expand_grid(p)),
                     "grid_epochs": grid_cost(p), "tuned": tuned_plan(p), "description": p.description})
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for r in rows:
        t = r["tuned"]
        print(f"{r['name']:<12} {','.join(r['archs']):<28} grid {r['grid_points']:>3} runs / {r['grid_epochs']:>5} "
              f"epochs | tuned {t['num_samples']} trials x <= {t['max_epochs']} epochs, <= {t['epoch_budget']} epochs "
              f"per net  ({r['report']})")
    return 0


def cmd_report(args) -> int:
    from analysis.load import ExperimentError, check_study, load_trials

    try:
        trials = load_trials(args.experiment)
        if args.json and not args.without_study:  # (write_report's load checks it, after the other files)
            check_study(args.experiment)
    except ExperimentError as e:
        raise SpecError(str(e)) from None
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise SpecError(f"--out {args.out!r} exists and is not a directory")
    without = without_study_note(args.experiment) if args.without_study else None
    if args.json:
        from analysis.load import load_spec
        from analysis.pareto import pareto_summary

        front = pareto_summary(load_spec(args.experiment), trials)  # objectives, pareto, hypervolume
        print(json.dumps({"experiment": str(Path(args.experiment).resolve()), "trials": trials, **front,
                          **({"without_study": without} if without else {})}, default=str))
        return 0
    try:
        from analysis.report import write_report
    except ImportError:
        write_report = None
    if write_report is None:
        for t in trials:
            print(f"{t['trial_id']:<14} {t['arch']:<14} {t['status']:<10} epochs {t['epochs']:>3} "
                  f"val_accuracy {t['val_accuracy'] if t['val_accuracy'] is not None else float('nan'):.4f}")
        return 0
    try:
        return write_report(args.experiment, out=args.out, without_study=args.without_study)
    except ExperimentError as e:  # a half-written asha_state.json or evaluation.json, an unreadable study
        raise SpecError(str(e)) from None


def without_study_note(experiment: str) -> str:
    """Say (on stderr, and return it) that the report comes from the Ray results alone, and why."""
    from analysis.load import load_spec
    from trainables.experiment import study_error

    why = study_error(experiment, load_spec(experiment)["spec"])
    note = ("the trials are read from the Ray results alone, without the Optuna study"
            + (f" ({why})" if why else " (not opened)") + ": the report has no hyperparameter importance")
    print(f"cifar-tune report: note: {note}", file=sys.stderr, flush=True)
    return note


def cmd_evaluate(args) -> int:
    """analysis.evaluate's command, holding the experiment's lock: it writes evaluation.json into it."""
    from analysis.evaluate import cmd_evaluate as evaluate

    if args.archs is not None:
        _csv(args.archs, "--archs")
    return holding_lock(args.experiment, "cifar-tune evaluate", lambda: evaluate(args))


def holding_lock(experiment: str, holder: str, run):
    """``run()`` while holding the experiment's lock, after checking that the experiment and its study can be read
    (one line, before the lock file, Ray or a test-split scoring). A search running in it is refused, naming it."""
    from analysis.load import check_study, load_spec

    load_spec(experiment)  # no such experiment: one line, before anything is made in it
    check_study(experiment)
    exp = str(Path(experiment).resolve())
    try:
        lock = ExperimentLock(exp, holder).acquire(create=False)
    except ExperimentLocked as e:
        raise SpecError(str(e)) from None
    try:
        return run()
    finally:
        lock.release()


def add_commands(sub) -> None:
    s = sub.add_parser("search", help="Optuna TPE + ASHA search on Ray Tune")
    s.add_argument("--arch", help="comma-separated nets; each gets its own study and the same budget")
    s.add_argument("--preset", help="NAME[:grid|:tuned] (see `cifar-tune presets`)")
    # The defaults of SEARCH_FLAGS are ExperimentSpec's (None here: see SEARCH_FLAGS).
    s.add_argument("--num-samples", type=int, help="trials per net (default 16)")
    s.add_argument("--max-epochs", type=int, help="default 8")
    s.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial (default 1)")
    s.add_argument("--reduction-factor", type=float, help="default 3")
    s.add_argument("--epoch-budget", type=int,
                   help="most epochs the search may train per net, enforced by ASHA's promotions (default 0: no cap)")
    s.add_argument("--scheduler", help="asha (the default) or none")
    s.add_argument("--sampler", help="tpe, random, nsga2, or grid (default tpe; grid: a report's own runs, which "
                                     "--preset P:grid sets)")
    s.add_argument("--objectives", help="multi-objective search, e.g. val_accuracy:max,params:min (metrics: "
                                        "val_accuracy val_loss params size_mb inference_latency_ms "
                                        "inference_images_per_s_b1 inference_images_per_s); early stopping by MO-ASHA")
    s.add_argument("--rung-ranking", help="MO-ASHA's order among a rung's non-dominated trials: hypervolume (each "
                                          "one's own share of the hypervolume; the default) or crowding "
                                          "(NSGA-II: the front's ends first)")
    s.add_argument("--seed", type=int, help="default 0")
    s.add_argument("--space", help="your own YAML search space (applies to every --arch)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a config value in every trial")
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

    p = sub.add_parser("presets", help="one preset per report: its experiment, as a grid or a tuned search")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_presets)

    r = sub.add_parser("report", help="tables and report.html for an experiment")
    r.add_argument("experiment")
    r.add_argument("--out", help="output directory (default: EXPERIMENT/report)")
    r.add_argument("--json", action="store_true", help="machine-readable trial summary")
    r.add_argument("--without-study", action="store_true",
                   help="read the trials from the Ray results alone, for an Optuna study that cannot be read "
                        "(no hyperparameter importance)")
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("evaluate", help="final test-set evaluation: retrain the top configs with N seeds, 95%% CIs")
    e.add_argument("experiment")
    e.add_argument("--top-k", type=int, default=3, help="configs per net, ranked by validation accuracy")
    e.add_argument("--repeats", type=int, default=5, help="seeds per config")
    e.add_argument("--train-on", default="train", choices=["train", "trainval"],
                   help="trainval also trains on the validation split (the table says which)")
    e.add_argument("--epochs", type=int, default=None, help="default: each config's own (the search's max epochs)")
    e.add_argument("--train-images", type=int, default=None,
                   help="train each final run on exactly N images (a report's training-set size); default: all")
    e.add_argument("--archs", help="comma-separated subset of the experiment's nets")
    e.add_argument("--svm-subset", type=int, default=0, help="also fit report 000's SVM on N training images")
    e.add_argument("--svm-k", type=int, default=448, help="PCA components of the SVM")
    e.add_argument("--address", help="Ray cluster: auto or HOST:PORT, or local for a new embedded one")
    e.add_argument("--pareto", action="store_true",
                   help="evaluate the Pareto front's members (see report) instead of the top-k per net")
    e.add_argument("--trials", help="evaluate exactly these trials (comma-separated ids, as in report)")
    e.add_argument("--json", action="store_true", help="print the saved record")
    e.set_defaults(func=cmd_evaluate)

    from search.reproduce import add_command as add_reproduce

    add_reproduce(sub)
