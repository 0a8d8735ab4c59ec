"""``cifar-tune reproduce REPORT [REPORT ...]``: a report's nets tuned, evaluated once, beside its numbers.

One command does the whole job, and running it again continues it:

1. **search**, one experiment per net (``ROOT/<arch>``): TPE + ASHA over the net's long-horizon space
   (``spaces/reproduce/<arch>.yaml``) with an epoch budget the scheduler enforces (``search/scheduler.py``);
   the report's own setting and a long-horizon one are enqueued first, so TPE starts from what the report knew.
   An unfinished search is resumed (``--resume``), a finished one is skipped.
2. **evaluate**: the best config of each net retrained from scratch with ``repeats`` seeds for ``final_epochs``
   on exactly as many images as the report's final model saw (``train_images``, from the report's preset: a
   seeded draw from train + validation, the same for every seed; from train alone where the report held out a
   validation split and published its accuracy, as 004 did; ``--train-images all`` for the whole split) and
   scored once on the test split (``analysis.evaluate``), each scoring counted in the test-split ledger; each run
   is saved as it ends, so a rerun trains only the runs that had not finished.
3. **tables**: ``ROOT/reproduce.json`` (per net: the published metric's mean, 95% CI, seeds, test accuracy beside
   it, search / final / report epochs, how the search ran (rule, proxy), wall seconds, command, device, versions,
   training images, test-split uses, the verdict), ``ROOT/reproduce.md`` (ours beside the published numbers) and
   each net's ``report.html``.

Several reports in one command run one after another in the order given (one Ray for all), each in its own
``ROOT``. The whole plan is printed first with its cost at the measured speed (``search.reproduce_plans``), and
an overall ETA as it goes.

Verdicts come from the 95% CI (``analysis.stats.verdict``): *beats* when its lower bound is above the published
number, *matches* when it contains it, *misses* when its upper bound is below it.

The plans and their budget rules (checked for every plan in the tests) live in ``search/reproduce_plans.py``.

    >>> plan = get_plan("report003")
    >>> [(n.arch, n.epoch_budget, n.report_epochs) for n in plan.nets]
    [('modified_net', 480, 2400), ('origin_net', 60, 300)]
    >>> plan.train_images
    40000
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.stats import verdict
from search.reproduce_plans import (NetPlan, OverallEta, ReproductionPlan, estimate, get_plan,  # noqa: F401
                                    hms, list_lines, list_plans, measured_speeds, own_setting, plan_lines,
                                    search_fixed, space_file)
from search.reproduce_tables import markdown_table
from search.spec import NAME, PLAN_SAMPLER, URL, ExperimentSpec, SpecError, default_storage
from trainables.config import is_count
from trainables.experiment import OUTCOMES_ENDED, SPEC_FILE, ExperimentLock, ExperimentLocked, write_json
from trainables.presets import get_preset

STATE_FILE = "reproduce.json"
SPEED_KNOBS = ("amp", "channels_last", "compile")  # change the speed, not the model: a space may fix them
TABLE_FILE = "reproduce.md"
JPEG_CAVEAT = ("offline copy: JPEG q75 re-encoding of CIFAR-10, about 1-2 points below the official files "
               "(not subtracted)")


# --------------------------------------------------------------------------------------------- state

def _read_state(root: Path) -> dict:
    path = root / STATE_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise SpecError(f"reproduce: {path} is not valid JSON (a half-written file?): move it away and rerun; the "
                        f"searches and finished evaluation runs beside it are kept") from None


def _write_state(root: Path, state: dict) -> None:
    write_json(root / STATE_FILE, state)


class _Clock:
    """Wall time of a stage, added to ``state[key]`` and saved every ``every`` seconds, so a killed run loses at
    most that much of its count; the stage's total is the sum over every invocation that worked on it.
    ``on_tick``: called at every save (the overall ETA's chance to speak)."""

    def __init__(self, root: Path, state: dict, key: tuple[str, str], lock: threading.Lock, every: float = 30.0,
                 on_tick=None):
        self.root, self.state, self.key, self.lock, self.every = root, state, key, lock, every
        self.on_tick = on_tick
        self.stop = threading.Event()

    def _tick(self, last: float) -> float:
        now = time.monotonic()
        with self.lock:
            entry = self.state.setdefault("wall_seconds", {}).setdefault(self.key[0], {})
            entry[self.key[1]] = entry.get(self.key[1], 0.0) + (now - last)
            _write_state(self.root, self.state)
        if self.on_tick is not None:
            self.on_tick()
        return now

    def __enter__(self):
        with self.lock:
            self.before = self.state.get("wall_seconds", {}).get(self.key[0], {}).get(self.key[1])
        self.refused = False

        def loop():
            last = time.monotonic()
            while not self.stop.wait(self.every):
                last = self._tick(last)
            if self.refused:
                self._undo()
            else:
                self._tick(last)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def _undo(self) -> None:
        """The stage was refused before it started: it adds no wall time (what the clock saved is taken back)."""
        with self.lock:
            walls = self.state.get("wall_seconds", {})
            entry = walls.get(self.key[0], {})
            if self.before is None:
                entry.pop(self.key[1], None)
            else:
                entry[self.key[1]] = self.before
            if not entry:
                walls.pop(self.key[0], None)
            if not walls:
                self.state.pop("wall_seconds", None)
            _write_state(self.root, self.state)

    def __exit__(self, exc_type, *exc):
        # a refusal (the exact classes: a Ray task's error that wraps one ran first, and its time counts)
        self.refused = exc_type in _refusals()
        self.stop.set()
        self.thread.join()


def _refusals() -> tuple:
    """The errors a stage is refused with before it runs anything (one line each, exit 2)."""
    from trainables.config import ConfigError
    from trainables.data import DataError

    return SpecError, DataError, ConfigError


# --------------------------------------------------------------------------------------------- stages

def net_spec(plan: ReproductionPlan, net: NetPlan, root: Path, fixed: dict, num_samples: int | None = None,
             max_epochs: int | None = None, max_concurrent: int = 0) -> ExperimentSpec:
    """The search of one net (``num_samples`` / ``max_epochs``: a smaller run of the same plan, for tests)."""
    samples = num_samples or net.num_samples
    horizon = max_epochs or net.max_epochs
    scale = horizon / net.max_epochs
    grace = max(1, min(horizon, round(net.grace_period * scale)))
    budget = max(samples * grace, round(net.epoch_budget * samples * scale / net.num_samples))
    budget = min(budget, net.epoch_budget)
    return ExperimentSpec(archs=[net.arch], num_samples=samples, max_epochs=horizon, grace_period=grace,
                          reduction_factor=net.reduction_factor, epoch_budget=budget, name=net.arch,
                          storage=str(root), fixed=search_fixed(plan, net, fixed),
                          space_files={net.arch: str(space_file(net.arch))},
                          enqueue={net.arch: [dict(p) for p in net.enqueue]}, max_concurrent=max_concurrent,
                          sampler=PLAN_SAMPLER)


def search_done(exp_dir: Path, num_samples: int) -> bool:
    """Every one of the ``num_samples`` trials the search asked for has ended (an unreadable experiment: False)."""
    from analysis.load import ExperimentError, load_trials

    try:
        trials = load_trials(exp_dir)
    except ExperimentError:
        return False
    ended = [t for t in trials if t["status"] in OUTCOMES_ENDED]
    return len(ended) >= num_samples


def search_epochs(exp_dir: Path) -> int:
    """Epochs the search trained: every epoch in every trial's history (an epoch trained again after a resume counts
    once: the history keeps the run that went on, ``search.history``; the wall time holds what was lost)."""
    from analysis.load import load_trials

    return int(sum(len(t.get("history") or []) or t.get("epochs") or 0 for t in load_trials(exp_dir)))


def _epochs_so_far(exp_dir: Path) -> int:
    from analysis.load import ExperimentError

    try:
        return search_epochs(exp_dir)
    except (ExperimentError, OSError, ValueError):
        return 0


@dataclass
class _Job:
    """One report's reproduction, validated: nothing made, nothing started."""
    plan: ReproductionPlan
    nets: list
    specs: dict  # arch -> ExperimentSpec of its search
    root: Path
    repeats: dict  # arch -> seeds of the final runs
    epochs: dict  # arch -> epochs of each final run
    train_images: int | None  # None: all of the split
    given: dict  # the options as the command gave them (None: left out, the plan's)


def _job(report: str, *, storage: str, name: str, repeats: int | None, fixed: dict, archs: list[str] | None,
         num_samples: int | None, max_epochs: int | None, final_epochs: int | None, train_images, max_concurrent: int,
         listing: bool = False) -> _Job:
    """``listing``: for ``--list``, which reads and loads nothing (``--train-images all`` stays "the whole split")."""
    plan = get_plan(report)
    given = {"repeats": repeats, "num_samples": num_samples, "max_epochs": max_epochs, "final_epochs": final_epochs,
             "train_images": train_images}
    if train_images is None:
        train_images = plan.train_images
    elif train_images == "all":
        train_images = None
    elif not is_count(train_images, 1):
        raise SpecError(f"--train-images must be an integer >= 1 or 'all', got {train_images!r}")
    else:
        _check_train_images(plan, fixed or {}, train_images)
    if repeats is not None and not is_count(repeats, 2):
        raise SpecError(f"--repeats must be an integer >= 2 (a 95% CI needs two seeds), got {repeats!r}")
    nets = [n for n in plan.nets if not archs or n.arch in archs]
    if not nets:
        raise SpecError(f"--archs {','.join(archs)}: no net of {report} ({', '.join(n.arch for n in plan.nets)})")
    root = _root(storage, name or f"reproduce-{report}", nets[0].arch)
    specs = {n.arch: net_spec(plan, n, root, dict(fixed or {}), num_samples, max_epochs, max_concurrent)
             for n in nets}
    state = {} if listing else _read_state(root)
    if state and state.get("report") != report:
        raise SpecError(f"reproduce: {root} holds a reproduction of {state.get('report')!r}, not {report!r}")
    if train_images is None and not listing and any(s.fixed.get("subset") for s in specs.values()):
        train_images = _whole_split(plan, fixed or {})  # the search's proxy subset must not reach the final runs
    # --max-epochs is the search's horizon alone: the final runs train the plan's epochs unless --final-epochs
    return _Job(plan, nets, specs, root, repeats={n.arch: repeats or plan.seeds(n) for n in nets},
                epochs={n.arch: final_epochs or n.final_epochs for n in nets}, train_images=train_images, given=given)


def _root(storage: str, name: str, arch: str) -> Path:
    """The reproduction's folder, ``name`` inside ``storage``; ``storage`` refused as ``search`` refuses its
    --storage (a file, a name the filesystem cannot hold: ``search.spec.ExperimentSpec``'s checks, on a spec of
    that folder), and a URL (the record and its searches live in a folder here)."""
    if URL.match(storage):
        raise SpecError(f"--storage {storage!r}: reproduce keeps its searches and record in a folder on this "
                        f"machine; give a directory")
    return Path(ExperimentSpec(archs=[arch], storage=storage, name=name).experiment_dir)


def _split_size(plan: ReproductionPlan, fixed: dict, data) -> int:
    """Images in the split the final runs draw from."""
    val = 0 if plan.train_on == "trainval" else int({**plan.settings, **fixed}.get("val_size", 5000))
    return int(len(data.split_indices(val)[0]))


def _whole_split(plan: ReproductionPlan, fixed: dict, download: bool = True) -> int:
    """Images in the split the final runs draw from (for ``--train-images all`` after a search on a subset)."""
    from trainables.data import load_dataset

    return _split_size(plan, fixed, load_dataset(fixed.get("data_dir"), fixed.get("dataset", "cifar10"),
                                                 download=download))


def _check_train_images(plan: ReproductionPlan, fixed: dict, train_images: int, data=None) -> None:
    """More images than the final runs' split holds: refused now, not hours later after the searches. Only where
    the data is here already (nothing is downloaded for a check; ``_check_data`` checks again once it is)."""
    from trainables.data import DataError

    try:
        whole = _whole_split(plan, fixed, download=False) if data is None else _split_size(plan, fixed, data)
    except DataError:
        return
    if train_images > whole:
        raise SpecError(f"--train-images {train_images}: the split {plan.report}'s final runs draw from has "
                        f"{whole:,} images")


def _check_data(job: _Job) -> None:
    """The data every stage of ``job`` reads, found (or downloaded, as a search would) and fitting each net's search
    and the final runs, before the plan is printed or anything is written: a stage refused after that would have
    left a record and wall time for nothing. The searches' own checks (``search.tuner``), reused."""
    from search.tuner import check_data_fits, load_data, load_spaces
    from trainables.ledger import check_writable

    check_writable()  # the final runs' scorings are ledgered: a folder that cannot take them is refused now
    data = load_data(job.specs[job.nets[0].arch])  # data_dir and dataset: the user's --data-dir / --set, every net's
    for net in job.nets:
        spec = job.specs[net.arch]
        check_data_fits(spec, data, load_spaces(spec))
        if job.train_images is not None:
            _check_train_images(job.plan, spec.fixed, job.train_images, data)
        else:
            _split_size(job.plan, spec.fixed, data)  # the final runs' split exists (raises DataError naming it)


def _estimates(job: _Job, speeds: dict) -> dict:
    return {n.arch: estimate(job.plan, n, job.specs[n.arch].fixed, job.specs[n.arch].epoch_budget,
                             job.repeats[n.arch], job.epochs[n.arch], job.train_images, speeds) for n in job.nets}


def run_reproduction(report: str, *, storage: str, name: str = "", repeats: int | None = None,
                     fixed: dict | None = None, archs: list[str] | None = None, num_samples: int | None = None,
                     max_epochs: int | None = None, final_epochs: int | None = None,
                     train_images: int | str | None = None, max_concurrent: int = 0, searches_only: bool = False,
                     log=print) -> dict | None:
    """Run (or continue) the reproduction of ``report``; returns the record written to ``reproduce.json`` (None
    with ``searches_only``: the searches run or continued, no final run; the same call without it goes on).

    ``train_images``: images per final run; None: the report's (``plan.train_images``); ``"all"``: the whole split
    (the behaviour before the fair protocol, recorded as such). ``max_concurrent``: trials of a search at once
    (0: as many as the machine holds), recorded in each search's spec like every other flag. ``max_epochs``: the
    searches' horizon; the final runs train ``final_epochs`` (None: the plan's)."""
    return run_reproductions([report], storage=storage, name=name, repeats=repeats, fixed=fixed, archs=archs,
                             num_samples=num_samples, max_epochs=max_epochs, final_epochs=final_epochs,
                             train_images=train_images, max_concurrent=max_concurrent,
                             searches_only=searches_only, log=log)[0]


def _jobs(reports: list[str], *, storage: str, name: str = "", repeats: int | None = None,
          fixed: dict | None = None, archs: list[str] | None = None, num_samples: int | None = None,
          max_epochs: int | None = None, final_epochs: int | None = None, train_images: int | str | None = None,
          max_concurrent: int = 0, listing: bool = False) -> list[_Job]:
    """Every option checked and each report's job built, for a run and for ``--list`` alike."""
    if not reports:
        raise SpecError("reproduce: name a report (e.g. report003), or --list")
    if len(set(reports)) != len(reports):
        raise SpecError(f"reproduce: a report is named twice: {' '.join(reports)}")
    if name and len(reports) > 1:
        raise SpecError(f"--name {name}: names one reproduction's folder; with several reports each goes to "
                        f"reproduce-REPORT")
    if name and not NAME.match(name):  # a folder inside --storage, as search's --name
        raise SpecError(f"--name must be letters, digits, '_', '.', '-', got {name!r}")
    for flag, value in (("--num-samples", num_samples), ("--max-epochs", max_epochs),
                        ("--final-epochs", final_epochs)):  # None: the plan's; 0 is not "the plan's"
        if value is not None and not is_count(value, 1):
            raise SpecError(f"{flag} must be an integer >= 1, got {value!r}")
    if archs and len(set(archs)) != len(archs):  # as search's --arch a,a
        raise SpecError(f"--archs: a net is listed twice: {','.join(archs)}")
    plans = [get_plan(r) for r in reports]
    unknown = sorted(set(archs or []) - {n.arch for p in plans for n in p.nets})
    if unknown:
        raise SpecError(f"--archs {','.join(unknown)}: not in {', '.join(reports)} "
                        f"({', '.join(n.arch for p in plans for n in p.nets)})")
    return [_job(r, storage=storage, name=name, repeats=repeats, fixed=dict(fixed or {}), archs=archs,
                 num_samples=num_samples, max_epochs=max_epochs, final_epochs=final_epochs,
                 train_images=train_images, max_concurrent=max_concurrent, listing=listing) for r in reports]


def plan_listing(reports: list[str] | None = None, *, storage: str = "", fixed: dict | None = None,
                 archs: list[str] | None = None, **options) -> list[str]:
    """``reproduce --list``: the plan of each report (None: every plan; with ``archs``, those that have them) as a
    run with the same options would run it, checked as that run checks them, with its cost at the measured speed;
    reads and writes nothing of a reproduction. ``options``: ``run_reproductions``'s."""
    if not reports:
        wanted = set(archs or [])
        reports = [r for r in list_plans() if not wanted or wanted & {n.arch for n in get_plan(r).nets}] \
            or list_plans()  # none has them: the run's own check names the unknown ones
    jobs = _jobs(reports, storage=storage or default_storage(), fixed=fixed, archs=archs, listing=True, **options)
    speeds, source = measured_speeds()
    return list_lines([(job.plan, job.nets, _estimates(job, speeds), job.specs) for job in jobs], source)


def run_reproductions(reports: list[str], *, storage: str, name: str = "", repeats: int | None = None,
                      fixed: dict | None = None, archs: list[str] | None = None, num_samples: int | None = None,
                      max_epochs: int | None = None, final_epochs: int | None = None,
                      train_images: int | str | None = None, max_concurrent: int = 0, searches_only: bool = False,
                      log=print) -> list[dict | None]:
    """``run_reproduction`` of each report in turn, every one validated before the first starts; one plan, one
    overall ETA. ``archs``: the nets to run, of whichever report has them."""
    jobs = _jobs(reports, storage=storage, name=name, repeats=repeats, fixed=fixed, archs=archs,
                 num_samples=num_samples, max_epochs=max_epochs, final_epochs=final_epochs,
                 train_images=train_images, max_concurrent=max_concurrent)
    for job in jobs:  # every search a report would keep or continue, and its final runs, before any report starts
        _check_continued(job, _read_state(job.root))
    for job in jobs:  # then the data (it may take a while to read): still nothing printed, nothing written
        _check_data(job)
    speeds, source = measured_speeds()
    costs = {job.plan.report: _estimates(job, speeds) for job in jobs}
    kept = {(job.plan.report, a, "search") for job in jobs for a, v in _read_state(job.root).get("searches", {}).items()
            if v.get("done")}
    stages = {}
    for job in jobs:
        for n in job.nets:
            c = costs[job.plan.report][n.arch]
            stages[(job.plan.report, n.arch, "search")] = c["search_seconds"]
            stages[(job.plan.report, n.arch, "final")] = c["final_seconds"]
    eta = OverallEta(stages, log)
    for key in kept & set(stages):
        eta.skip(key)
    log(f"reproduce: the plan ({source}):")
    for job in jobs:
        for line in plan_lines(job.plan, job.nets, costs[job.plan.report], job.specs, kept):
            log(line)
    log(f"reproduce: total ~{hms(eta.seconds_left())} of training at the measured speed (each search at its whole "
        f"budget; ASHA may stop it sooner)")
    return [_run_job(job, eta, log, searches_only) for job in jobs]


def _run_job(job: _Job, eta: OverallEta, log, searches_only: bool = False) -> dict | None:
    root = job.root
    root.mkdir(parents=True, exist_ok=True)
    try:
        held = ExperimentLock(root, "cifar-tune reproduce").acquire()  # one reproduction per folder at a time
    except ExperimentLocked as e:
        raise SpecError(str(e)) from None
    try:
        state = _read_state(root)  # read under the lock: no other command writes it now
        _check_continued(job, state)  # a refused command leaves the record as it was: nothing appended, nothing run
        command = " ".join(shlex.quote(a) for a in ["cifar-tune", *sys.argv[1:]])
        state.setdefault("report", job.plan.report)
        state.setdefault("commands", [])
        state["commands"].append({"command": command, "at": _dt.datetime.now().isoformat(timespec="seconds")})
        state.setdefault("plan", job.plan.to_dict())
        state.setdefault("searches", {})
        _write_state(root, state)
        return _run_stages(job, state, threading.Lock(), eta, log, searches_only)
    finally:
        held.release()


def _check_continued(job: _Job, state: dict) -> None:
    """Every search this command would keep or continue, checked before anything runs or is recorded: a finished
    one must be asked for as it was started (a changed budget or ``--set`` is refused naming it, never silently
    ignored); an unfinished one as ``search --resume`` checks it (``search.tuner.check_resume``). And the final
    runs a net already has (``_check_final_runs``)."""
    from search.tuner import check_resume, check_started_as, saved_spec

    for net in job.nets:
        spec, exp_dir = job.specs[net.arch], job.root / net.arch
        if state.get("searches", {}).get(net.arch, {}).get("done"):
            saved = saved_spec(exp_dir)
            _check_budget(job, net, saved)
            check_started_as(spec, saved)
        elif (exp_dir / SPEC_FILE).exists():
            _check_budget(job, net, saved_spec(exp_dir))
            check_resume(spec)
        _check_final_runs(job, net, state)


def _check_budget(job: _Job, net: NetPlan, saved: dict) -> None:
    """The options a search kept or continued is sized by, as reproduce takes them: left out means the plan's value,
    so the one to give again is the value it was started with (``check_started_as`` says "leave it out", which
    for reproduce would ask for the plan's)."""
    spec, exp_dir = job.specs[net.arch], job.root / net.arch
    for flag, key, plan_value in (("--num-samples", "num_samples", net.num_samples),
                                  ("--max-epochs", "max_epochs", net.max_epochs)):
        was, now = saved.get(key), getattr(spec, key)
        if was is None or was == now:
            continue
        asked = f"{flag} {now}" if job.given[key] is not None else f"{flag} left out (the plan's {plan_value})"
        again = f"{flag} {was}" + (" (the plan's: or leave it out)" if was == plan_value else " again")
        raise SpecError(f"{asked}: the search of {net.arch} in {str(exp_dir)!r}, which this continues, was started "
                        f"with {flag} {was}; a rerun finishes it as it was started: give {again}, or a new --name")


FINAL_FLAGS = {"repeats": "--repeats", "epochs": "--final-epochs", "train_images": "--train-images"}


def _final_options(job: _Job, arch: str) -> dict:
    """What this command's final runs of ``arch`` are made with (``FINAL_FLAGS``); recorded in reproduce.json's
    ``final_runs`` when they start."""
    return {"repeats": job.repeats[arch], "epochs": job.epochs[arch], "train_images": job.train_images}


def _final_runs_made(job: _Job, net: NetPlan, state: dict) -> dict | None:
    """What the final runs ``net`` already has (finished, or in flight) were made with; None: it has none. A record
    written before ``final_runs`` was kept says it in its result, or in the config of a run it saved."""
    from analysis.evaluate import in_flight_epochs, saved_runs

    exp_dir = job.root / net.arch
    saved = saved_runs(exp_dir, net.arch)
    result = next((n for n in (state.get("result") or {}).get("nets", []) if n.get("arch") == net.arch), None)
    if not saved and result is None and not in_flight_epochs(exp_dir, net.arch):
        return None
    made = (state.get("final_runs") or {}).get(net.arch)
    if made is not None:
        return made
    if result is not None:  # its config is the final runs' (their subset: --train-images; none: all of the split)
        return {"repeats": result.get("repeats"), "epochs": result.get("final_epochs_per_run"),
                "train_images": (result.get("config") or {}).get("subset")}
    for path in saved:
        try:
            config = json.loads(path.read_text())["config"]
            return {"epochs": config.get("epochs"), "train_images": config.get("subset")}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return {}


def _check_final_runs(job: _Job, net: NetPlan, state: dict) -> None:
    """Final runs a net has (finished or in flight) are kept only for the same options: each run scores the test
    split once (every scoring is a ledger entry), so other ones would spend it again on the same net. Refused
    naming what they were made with; a new --name is another reproduction, with its own test-split uses."""
    made = _final_runs_made(job, net, state)
    if not made:
        return
    now = _final_options(job, net.arch)
    changed = [k for k in FINAL_FLAGS if k in made and made[k] != now[k]]
    if not changed:
        return

    def shown(key: str, value) -> str:
        return f"{FINAL_FLAGS[key]} {'all' if key == 'train_images' and value is None else value}"

    def wanted(key: str) -> str:  # as this command asks for it
        given = job.given[{"epochs": "final_epochs"}.get(key, key)]
        if given is None:
            return shown(key, now[key]) + " (left out: the plan's)"
        return shown(key, now[key]) if given != "all" or now[key] is None else f"--train-images all ({now[key]:,})"

    asked = " ".join(wanted(k) for k in changed)
    before = " ".join(shown(k, made[k]) for k in FINAL_FLAGS if k in made)
    raise SpecError(f"{asked}: the final runs of {net.arch} in {str(job.root)!r} were made with {before}; each is "
                    f"scored on the test split as it ends, so other ones would be another use of it: give the same "
                    f"options to continue, or a new --name to run them as a new reproduction")


def _run_stages(job: _Job, state: dict, lock: threading.Lock, eta: OverallEta, log,
                searches_only: bool = False) -> dict | None:
    from search.tuner import run_search

    plan, root, report = job.plan, job.root, job.plan.report
    for net in job.nets:  # 1. the searches
        spec, exp_dir = job.specs[net.arch], root / net.arch
        if state["searches"].get(net.arch, {}).get("done"):  # asked for as it was started (_check_continued)
            log(f"reproduce {report}: search {net.arch}: finished earlier, kept")
            continue
        resume = (exp_dir / SPEC_FILE).exists()
        log(f"reproduce {report}: search {net.arch}: {spec.num_samples} trials x <= {spec.max_epochs} epochs, "
            f"budget {spec.epoch_budget} epochs (report: {net.report_epochs}){' [resumed]' if resume else ''}")
        eta.start((report, net.arch, "search"), 1 - _epochs_so_far(exp_dir) / spec.epoch_budget if resume else 1)
        with _Clock(root, state, (net.arch, "search"), lock, on_tick=eta.maybe_say):
            run_search(spec, resume=resume)
        if not search_done(exp_dir, spec.num_samples):
            raise SpecError(f"reproduce: the search of {net.arch} ended unfinished; run the same command again")
        eta.finish((report, net.arch, "search"))
        with lock:
            state["searches"][net.arch] = {"done": True, "epochs": search_epochs(exp_dir),
                                           "experiment": str(exp_dir)}
            _write_state(root, state)

    if searches_only:  # e.g. to check a proxy search (benchmarks.proxy_check) before hours of final runs
        log(f"reproduce {report}: searches finished; the final runs: the same command without --searches-only")
        return None
    from analysis.evaluate import evaluate_experiment, in_flight_epochs, ledger_lines, saved_runs

    evaluations = {}
    for net in job.nets:  # 2. the final runs: each saved as it ends, so a rerun trains only the missing ones
        repeats, epochs, train_images = job.repeats[net.arch], job.epochs[net.arch], job.train_images
        size = f"{train_images:,} images of {plan.train_on}" if train_images else f"all of {plan.train_on}"
        log(f"reproduce {report}: evaluate {net.arch}: best config x {repeats} seeds x {epochs} epochs on "
            f"{size}, scored once on the test split")
        try:
            held = ExperimentLock(root / net.arch, "cifar-tune reproduce (evaluate)").acquire(create=False)
        except ExperimentLocked as e:
            raise SpecError(str(e)) from None
        try:
            saved = len(saved_runs(root / net.arch, net.arch))
            saved += sum(min(e, epochs) / epochs for e in in_flight_epochs(root / net.arch, net.arch))  # part-run
            eta.start((report, net.arch, "final"), 1 - min(saved, repeats) / repeats)
            with lock:  # what they are made with, before the first is scored: a rerun keeps them only for the same
                state.setdefault("final_runs", {})[net.arch] = _final_options(job, net.arch)
                _write_state(root, state)

            def progress(line: str) -> None:
                log(line)
                eta.maybe_say()

            with _Clock(root, state, (net.arch, "evaluate"), lock, on_tick=eta.maybe_say):
                evaluations[net.arch] = evaluate_experiment(root / net.arch, top_k=1, repeats=repeats,
                                                            train_on=plan.train_on, epochs=epochs, address="local",
                                                            progress=progress, train_images=train_images,
                                                            cpus_per_run=min(net.final_cpus, os.cpu_count() or 1),
                                                            command=state["commands"][-1]["command"])
            eta.finish((report, net.arch, "final"))
            for line in ledger_lines(evaluations[net.arch]):
                log(f"reproduce {report}: {line}")
        finally:
            held.release()

    record = _record(job, state, evaluations)  # 3. the tables
    with lock:
        state["result"] = record
        _write_state(root, state)
    (root / TABLE_FILE).write_text(markdown_table(record))
    from analysis.report import write_report

    for net in job.nets:
        write_report(root / net.arch, quiet=True)
    return record


def _record(job: _Job, state: dict, evaluations: dict) -> dict:
    from analysis.load import load_trials
    from analysis.rungs import rung_agreement
    from trainables.train import environment

    plan, root, nets = job.plan, job.root, job.nets
    spec_json = json.loads((root / nets[0].arch / SPEC_FILE).read_text())
    env = environment()
    out = {"report": plan.report, "title": plan.title, "data": spec_json.get("data"), "caveat": JPEG_CAVEAT,
           "train_on": plan.train_on, "report_train_images": plan.train_images,
           "report_train_images_why": get_preset(plan.report).train_images_why,
           "device": env.get("gpu") or f"CPU: {_cpu_name()}, {os.cpu_count()} cores", "environment": env,
           "ray": spec_json.get("ray"), "optuna": spec_json.get("optuna"),
           "commands": state.get("commands", []), "created": _dt.datetime.now().isoformat(timespec="seconds"),
           "nets": []}
    trials = {net.arch: load_trials(root / net.arch) for net in nets}
    specs = {net.arch: json.loads((root / net.arch / SPEC_FILE).read_text())["spec"] for net in nets}
    for net in nets:
        ev = evaluations[net.arch]
        best = next(r for r in ev["results"] if r.get("rank") == 1)
        metric = best[net.metric]
        wall = state.get("wall_seconds", {}).get(net.arch, {})
        uses = (ev.get("test_split") or {}).get("nets", {}).get(net.arch, {})
        spec = specs[net.arch]
        out["nets"].append({
            "arch": net.arch, "metric": net.metric, "mean": metric["mean"], "ci95": metric["ci95"],
            "per_seed": [r[net.metric] for r in best["runs"]], "seeds": best["seeds"], "ours_note": net.ours_note,
            "test_accuracy": best["test_accuracy"], "weighted_f1": best["weighted_f1"],
            "published": net.published, "published_note": net.published_note,
            "verdict": verdict(metric, net.published), "published_test_accuracy": net.published_test,
            "test_verdict": None if net.published_test is None else verdict(best["test_accuracy"], net.published_test),
            "train_images": best.get("train_images"),
            "train_draw": ev.get("train_draw"), "test_split_use": uses.get("this_evaluation"),
            "test_split_uses": uses.get("uses"),
            "search_epochs": state["searches"][net.arch]["epochs"], "search_epoch_budget": spec["epoch_budget"],
            # how the search ran: the plan's rule, and a proxy where its trials saw a subset of the training images
            "search_rule": net.rule, "search_trials_planned": spec["num_samples"],
            "search_max_epochs": spec["max_epochs"], "search_images": (spec.get("fixed") or {}).get("subset") or None,
            "final_epochs": sum(r.get("epochs") or 0 for r in best["runs"]), "final_epochs_per_run":
                best["config"].get("epochs"), "repeats": job.repeats[net.arch], "report_epochs": net.report_epochs,
            "wall_seconds": {"search": round(wall.get("search", 0.0)), "evaluate": round(wall.get("evaluate", 0.0))},
            "config": {k: v for k, v in best["config"].items() if k != "data_dir"},
            "val_accuracy_search": next((t["best_val_accuracy"] for t in trials[net.arch]
                                         if t["trial_id"] == best["trial_id"]), None),
            "search_trials": _outcomes(trials[net.arch]),
            "rung_agreement": rung_agreement(trials[net.arch], milestones(spec), spec["reduction_factor"]),
            "why": net.why})
    return out


def milestones(spec: dict) -> list[int]:
    """ASHA's rungs for a spec (grace x eta^k below max_epochs, as Ray places them), then max_epochs."""
    from search.moasha import milestones as rung_epochs

    return [*rung_epochs(spec["max_epochs"], spec["grace_period"], spec["reduction_factor"]), spec["max_epochs"]]


def _outcomes(trials: list[dict]) -> dict:
    counts: dict = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    return counts


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
