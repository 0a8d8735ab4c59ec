"""Build and run (or resume) a search: spaces -> searcher + scheduler -> ``ray.tune.Tuner`` -> experiment dir.

The experiment directory holds Ray's results (one folder per trial), ``optuna.db`` (one study per architecture),
the scheduler's record (``asha_state.json``, ``hyperband_state.json`` or ``pbt_state.json``) and ``spec.json``
(the resolved command, spaces, versions, hardware, seed).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from search.spec import RESUME_FIXED, ExperimentSpec, SpecError, resume_conflict
from trainables.compat import check_reachable
from trainables.config import ARCH_KWARGS, METRIC, MODE
from trainables.experiment import (LOCK_FILE, OPTUNA_DB, SPEC_FILE, ExperimentLock, ExperimentLocked, data_change,
                                  restoring, sqlite_url, study_name, unreadable_study, without_test_split,
                                  write_json)


def trial_dirname(trial) -> str:
    """Short trial folder names: <arch>_<trial id>."""
    return f"{trial.config.get('arch', 'trial')}_{trial.trial_id}"


def keep_results_on_retry():
    """A Tune callback that keeps every result line of a trial Tune retries after a failure.

    Tune writes a trial's ``result.json`` on the driver and copies it to the storage every few seconds; to retry a
    failed trial from its checkpoint it copies the storage's copy *back* over the driver's, dropping the lines written
    since the last copy (an epoch vanishes from the trial's history). Pushing the driver's copy first keeps them.
    """
    from ray.tune import Callback

    class KeepResultsOnRetry(Callback):
        def on_trial_recover(self, iteration, trials, trial, **info):
            import logging

            import pyarrow.fs

            from trainables.compat import trial_storage

            fs, remote_dir = trial_storage(trial)
            try:
                # A trial that fails before Tune first synced it has no folder in the storage yet.
                fs.create_dir(remote_dir, recursive=True)
                for name in ("result.json", "progress.csv"):
                    local = Path(trial.local_path) / name
                    if local.exists() and local.stat().st_size:
                        pyarrow.fs.copy_files(str(local), f"{remote_dir}/{name}", destination_filesystem=fs)
            except Exception as e:  # bookkeeping must never take the search down with it
                logging.getLogger("cifar_tune").warning(
                    "trial %s: could not push its result files before the retry (%s); Tune's own copy is kept",
                    trial.trial_id, e)

    return KeepResultsOnRetry()


def load_spaces(spec: ExperimentSpec) -> dict:
    """arch -> SearchSpace; a ``--set`` value takes its key out of the search (it is fixed, not sampled)."""
    from spaces import SpaceError, load_space

    out = {}
    for arch in spec.archs:
        path = spec.space_files.get(arch)
        if path is None and spec.objectives:  # a size-aware search also searches the net's size knobs
            path = size_space_file(arch)
        try:
            space = load_space(arch, path)
        except SpaceError as e:
            raise SpecError(f"--space: {e}") from None
        pinned = {k: v for k, v in spec.fixed.items() if k in space.params or k in space.fixed}
        if arch in spec.nets:  # every trial of a user's net says which code it runs (and its worker loads that)
            pinned.update(net=spec.nets[arch]["resolved"], net_sha256=spec.nets[arch]["sha256"])
        if pinned:
            space = dataclasses.replace(space, params={k: p for k, p in space.params.items() if k not in pinned},
                                        fixed={**space.fixed, **pinned})
        out[arch] = space
    return out


def size_space_file(arch: str) -> str | None:
    """``spaces/size/<arch>.yaml`` (the net's space plus its size knobs) when shipped, else None."""
    from spaces import shipped_dir

    path = shipped_dir() / "size" / f"{arch}.yaml"
    return str(path) if path.exists() else None


def trial_resources(spec: ExperimentSpec, resources: dict) -> dict:
    """Per-trial CPUs and GPUs: the spec's, else 1 CPU and, with GPUs, a quarter GPU (small nets pack four)."""
    gpus = spec.gpus_per_trial if spec.gpus_per_trial >= 0 else (0.25 if resources.get("GPU", 0) else 0)
    cpus = spec.cpus_per_trial or 1
    if gpus and not resources.get("GPU", 0):
        raise SpecError(f"--gpus-per-trial {gpus} asked for, but the Ray cluster has no GPU")
    if cpus > resources.get("CPU", 0):
        raise SpecError(f"--cpus-per-trial {cpus} exceeds the cluster's {resources.get('CPU', 0)} CPUs")
    return {"cpu": cpus, "gpu": gpus}


def init_ray(spec: ExperimentSpec) -> None:
    import ray

    # Ray forces an experiment-state snapshot whenever a trial has saved num_to_keep checkpoints since the last one,
    # so a resume never points at a deleted checkpoint. With a checkpoint per epoch and epochs of seconds that is
    # frequent and intended; Ray's warning about it would drown the progress lines.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    # Worker output stays in Ray's logs; the driver shows our progress lines (trial errors still reach it).
    kwargs = dict(include_dashboard=False, configure_logging=True, logging_level="WARNING", log_to_driver=False)
    from trainables.plugins import experiment_runtime_env

    # Users' code (nets, a dataset class) reaches every node's workers through Ray's py_modules; a worker finds a
    # shipped file by its sha256.
    shipped = experiment_runtime_env(spec.nets, spec.fixed.get("dataset") or "")
    if shipped:
        kwargs["runtime_env"] = shipped
    from trainables.compat import ray_init

    if spec.address and spec.address != "local":
        ray_init(address=spec.address, **kwargs)
    else:
        # "local": a Ray of our own. A bare ray.init() joins any cluster `ray start` left running on this machine,
        # whose other nodes would then write to a --storage that ExperimentSpec's node-local check never vetted.
        # Loopback: an embedded single-node Ray has no reason to listen on the machine's network interfaces.
        ray_init(address="local", _node_ip_address="127.0.0.1", **kwargs)


def load_data(spec: ExperimentSpec):
    from trainables.data import load_dataset

    data = load_dataset(spec.fixed.get("data_dir"), spec.fixed.get("dataset", "cifar10"))
    data.channel_stats()  # computed once here; the cached value travels to every trial with the arrays
    return data


def build_tuner(spec: ExperimentSpec, data, spaces: dict, *, resume: bool = False, callbacks=(),
                warm: dict | None = None):
    from ray import tune

    from search.moasha import milestones as rung_epochs
    from search.progress import ProgressCallback
    from search.history import CheckpointedResults
    from search.scheduler import STATE_FILE, PerArchASHA
    from search.searcher import MultiArchSearcher, RowSearcher
    from search.trackers import tracker_callbacks
    from trainables.train import tune_trainable

    exp_dir = Path(spec.experiment_dir)
    fixed = {**spec.fixed, "epochs": spec.max_epochs}
    # Trials get the training set only: the test split is not even shipped to them (and not put in the object store).
    data = without_test_split(data)
    if spec.sampler == "grid":
        total = len(spec.grid)
        searcher = RowSearcher([{**fixed, **row} for row in spec.grid])
        param_space = None
    else:
        total = spec.num_samples * len(spec.archs)
        searcher = MultiArchSearcher({a: s.define_by_run for a, s in spaces.items()}, spec.num_samples, fixed,
                                     storage=spec.study_storage, study_prefix=spec.name, sampler=spec.sampler,
                                     seed=spec.seed, warm_start=warm or {}, enqueue=spec.enqueue,
                                     objectives=spec.objectives or None)
        param_space = None
    scheduler = (PerArchASHA(spec.archs, spec.max_epochs, spec.grace_period, spec.reduction_factor,
                             state_path=exp_dir / STATE_FILE, epoch_budget=spec.epoch_budget or None,
                             num_samples=spec.num_samples)
                 if spec.scheduler == "asha" and spec.sampler != "grid" else None)
    milestones = ([*rung_epochs(spec.max_epochs, spec.grace_period, spec.reduction_factor), spec.max_epochs]
                  if scheduler else None)
    if scheduler is not None and spec.objectives:
        from search.moasha import STATE_FILE as MO_STATE_FILE, PerArchMOASHA

        scheduler = PerArchMOASHA(spec.archs, spec.objectives, spec.max_epochs, spec.grace_period,
                                  spec.reduction_factor, state_path=exp_dir / MO_STATE_FILE,
                                  epoch_budget=spec.epoch_budget or None, num_samples=spec.num_samples,
                                  ranking=spec.rung_ranking)
    search_alg, keep = searcher, 3
    if spec.scheduler == "hyperband":
        from search.hyperband import STATE_FILE as HB_STATE_FILE, PerArchHyperBand, milestones as hb_milestones

        scheduler = PerArchHyperBand(spec.archs, spec.max_epochs, spec.reduction_factor,
                                     state_path=exp_dir / HB_STATE_FILE)
        milestones = [*hb_milestones(spec.max_epochs, spec.reduction_factor), spec.max_epochs]
    elif spec.scheduler == "pbt":
        # Ray's PBT takes no searcher: the population is asked of ours now, and Tune runs it as fixed configs.
        from ray.tune.search import BasicVariantGenerator

        from search.pbt import STATE_FILE as PBT_STATE_FILE, PerArchPBT, ask_population

        population = ask_population(searcher, total)
        scheduler = PerArchPBT(spec.archs, {a: {k: p.to_dict() for k, p in spaces[a].params.items()}
                                            for a in spec.archs}, spec.grace_period, spec.max_epochs, searcher,
                               population, state_path=exp_dir / PBT_STATE_FILE, seed=spec.seed)
        search_alg = BasicVariantGenerator(points_to_evaluate=[dict(r["config"]) for r in population])
        # Every key a member sets must be in the param space (None there: a member without it gets None, which
        # PerArchPBT.on_trial_add takes out again, so each trial's config is exactly the member's).
        param_space = {k: None for r in population for k in r["config"]}
        # A donor's checkpoint of the boundary epoch must outlive the interval its copier may wait to restart.
        keep = max(3, spec.grace_period + 2)
    import ray

    res = trial_resources(spec, ray.cluster_resources())
    trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data), res)
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=total,
                                  max_concurrent_trials=(spec.max_concurrent or None) if search_alg is searcher
                                  else None, reuse_actors=True, trial_dirname_creator=trial_dirname)
    run_config = tune.RunConfig(
        name=spec.name, storage_path=spec.storage, verbose=0,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=keep),
        callbacks=[ProgressCallback(total, spec.max_epochs, milestones=milestones,
                                    reduction_factor=spec.reduction_factor,
                                    epoch_budget=spec.epoch_budget * len(spec.archs) or None),
                   CheckpointedResults(), keep_results_on_retry(), *tracker_callbacks(spec), *callbacks])
    kwargs = {"param_space": param_space} if param_space is not None else {}
    return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config, **kwargs), res


def write_spec(spec: ExperimentSpec, data, spaces: dict, resources: dict) -> None:
    import ray

    from trainables.train import environment

    exp_dir = Path(spec.experiment_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    record = {"spec": spec.to_dict(), "command": " ".join(shlex.quote(a) for a in ["cifar-tune", *sys.argv[1:]]),
              "metric": METRIC, "mode": MODE, "spaces": {a: s.to_dict() for a, s in spaces.items()},
              "trial_resources": resources, "environment": environment(),
              "cluster_resources": {k: v for k, v in ray.cluster_resources().items() if "node:" not in k},
              "ray": ray.__version__, "optuna": __import__("optuna").__version__,
              "data": {"name": data.name, "source": data.source, "checksum": data.checksum,
                       "train_val": int(len(data.train_y)), "test": int(len(data.test_y))}}
    write_json(exp_dir / SPEC_FILE, record)


def warm_start_trials(spec: ExperimentSpec) -> dict:
    """arch -> the finished trials of the --warm-start experiment's study for that net; checked before Ray starts."""
    from search.searcher import finished_trials

    if not spec.warm_start:
        return {}
    if "://" in spec.warm_start:
        src, prefix = spec.warm_start, spec.name
    else:
        source = Path(spec.warm_start).expanduser()
        if not (source / SPEC_FILE).is_file():
            raise SpecError(f"--warm-start {spec.warm_start!r} is not a cifar-tune experiment (no {SPEC_FILE})")
        try:
            prefix = json.loads((source / SPEC_FILE).read_text())["spec"]["name"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SpecError(f"--warm-start {spec.warm_start!r}: unreadable {SPEC_FILE} ({e})") from None
        if not (source / OPTUNA_DB).is_file():
            raise SpecError(f"--warm-start {spec.warm_start!r} has no {OPTUNA_DB} (its studies were kept elsewhere: "
                            f"pass that database URL)")
        src = sqlite_url(source)
    warm = {}
    for arch in spec.archs:
        try:
            warm[arch] = finished_trials(src, study_name(prefix, arch))
        except KeyError:  # that net was not in the earlier experiment
            warm[arch] = []
        except Exception as e:  # an unreachable database, a file that is not one
            raise SpecError(f"--warm-start {spec.warm_start!r}: cannot read the study "
                            f"{study_name(prefix, arch)!r} ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return warm


def check_data_fits(spec: ExperimentSpec, data, spaces: dict | None = None) -> None:
    """Every net's config (its space's fixed values, ``--set``, a grid row) fits the data, refused here, before Ray,
    instead of as an error in every trial: a validation split to rank trials on that the data holds (a 500-image
    folder with the default 5,000 does not), and a net that builds for the data's images (channels, side or
    ``image_size``, classes, shape knobs). A registry net is built on the meta device (no memory, no compute); a
    user's net for real, and run on a dummy batch."""
    import torch

    from trainables.config import ConfigError, resolve_config
    from trainables.plugins import PluginError
    from trainables.train import build_model

    rows = spec.grid or [{"arch": a} for a in spec.archs]
    checked = set()
    for row in rows:
        space = (spaces or {}).get(row.get("arch"))
        cfg = resolve_config({**(space.fixed if space else {}), **spec.fixed, **row})
        if cfg["val_size"] == 0:
            raise SpecError(f"val_size 0 (arch {cfg['arch']}): a search ranks its trials on the validation split, "
                            f"so it needs one (0, no validation split, is for final runs: evaluate --train-on "
                            f"trainval)")
        data.split_indices(cfg["val_size"])  # raises DataError naming the value and the data's size
        key = json.dumps({k: cfg[k] for k in ("arch", "image_size", "dropout", "norm", *ARCH_KWARGS)},
                         sort_keys=True, default=str)
        if key in checked:
            continue
        checked.add(key)
        try:
            if cfg["arch"] in spec.nets:  # a user's net: built and run on a dummy batch of this data's shape
                build_model(cfg, data)
            else:
                with torch.device("meta"):
                    build_model({**cfg, "pretrained": None}, data)  # the shapes only: no weights to fetch
        except PluginError:  # names the net's file:line itself
            raise
        except ConfigError as e:  # names the arch and the input it cannot take
            raise SpecError(str(e)) from None


def check_study_storage(url: str) -> None:
    import optuna

    try:
        optuna.storages.RDBStorage(url).engine.dispose()
    except Exception as e:  # a bad URL, a missing driver, a server that does not answer
        raise SpecError(f"--optuna-storage {url!r}: cannot open the database ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None


def check_storage(storage: str, timeout: float = 30.0) -> None:
    """A URL ``--storage`` (s3://, gs://, ...) must answer before Ray starts: Tune opens it through pyarrow once Ray
    is up, and one it cannot reach (no network, no credentials, a wrong endpoint) failed there, inside Ray's setup,
    with a traceback. One look at the path (``get_file_info``), within ``timeout`` s (object stores retry)."""
    from search.spec import URL

    if not URL.match(storage) or storage.startswith("file://"):
        return
    import threading

    import pyarrow.fs

    outcome: dict = {}

    def look() -> None:
        try:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
            filesystem.get_file_info(path)
            outcome["ok"] = True
        except Exception as e:  # noqa: BLE001  (pyarrow raises OSError, ArrowInvalid, ... by filesystem)
            outcome["error"] = e

    looking = threading.Thread(target=look, name="storage-check", daemon=True)
    looking.start()
    looking.join(timeout)
    if outcome.get("ok"):
        return
    error = outcome.get("error")
    why = (f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}" if error is not None
           else f"no answer within {timeout:.0f} s")
    raise SpecError(f"--storage {storage!r}: cannot reach it ({why}); check the network, the credentials and the "
                    f"endpoint, or give a directory")


class SearchInterrupted(Exception):
    """The search was stopped by SIGINT or SIGTERM; Tune saved its state, ``--resume`` finishes it."""

    def __init__(self, signum: int, unfinished: int):
        import signal

        self.signum, self.unfinished = signum, unfinished
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def unfinished_trials(spec: ExperimentSpec) -> int:
    """Trials a ``--resume`` of this experiment has still to run or finish, from the state Tune saved (in memory,
    Tune marks the trials it stopped for a signal TERMINATED, as if they had ended)."""
    from analysis.load import ExperimentError, load_trials

    try:
        trials = load_trials(spec.experiment_dir)
    except ExperimentError:
        trials = []
    planned = len(spec.grid) if spec.grid else spec.num_samples * len(spec.archs)
    return sum(t["status"] in ("running", "pending") for t in trials) + max(0, planned - len(trials))


class _Stopped:
    """The signal that last stopped this process, for the one line: Ray re-raises an interrupt caught in its waits
    (``ray.wait``, ``ray.get``) as a new, plain KeyboardInterrupt, so an attribute put on the first one is lost."""
    signum: int | None = None


def _sigterm(signum, _frame):
    _Stopped.signum = signum
    raise KeyboardInterrupt


class stop_on_sigterm:
    """The CLI's, around every command: SIGTERM stops it as Ctrl-C does (a KeyboardInterrupt, so whatever is saved
    is kept and the command says so in one line, exit 143), wherever it is; a search hands it to Tune instead
    (``_Interrupts``), and ``trainables.compat.ray_init`` keeps it across ``ray.init``. The handler before is put
    back on the way out (an in-process caller's own)."""

    def __enter__(self):
        import signal
        import threading

        _Stopped.signum, self.before = None, None
        if threading.current_thread() is threading.main_thread():
            self.before = signal.signal(signal.SIGTERM, _sigterm)
        return self

    def __exit__(self, *exc):
        import signal

        if self.before is not None:
            signal.signal(signal.SIGTERM, self.before)
        return False


def stop_signal(error: BaseException) -> int:
    """The signal behind ``error`` (``SearchInterrupted`` or ``KeyboardInterrupt``): SIGINT unless SIGTERM said so."""
    import signal

    return getattr(error, "signum", None) or _Stopped.signum or signal.SIGINT


def interrupted_exit(error: BaseException, prog: str, saved: str, again: str) -> int:
    """One line for a stop by Ctrl-C or SIGTERM (``SearchInterrupted`` or ``KeyboardInterrupt``): which signal, what
    is saved, the command that continues; returns the exit status, 128 + the signal's number."""
    import signal

    signum = stop_signal(error)
    print(f"\n{prog}: interrupted ({signal.Signals(signum).name}); {saved}; continue with: {again}", file=sys.stderr,
          flush=True)
    return 128 + signum


class _Interrupts:
    """SIGINT and SIGTERM stop the search the way Tune stops on its own SIGINT: no new trials, the running ones
    stopped, the experiment state saved. Tune only catches SIGINT (and SIGUSR1) and then ends as if the search had
    finished; here both signals are caught, remembered (for the exit status) and handed to Tune's SIGUSR1 handler.
    A second signal, or one before Tune is listening, stops at once (KeyboardInterrupt)."""

    def __init__(self):
        from search.progress import INTERRUPTED

        self.signum: int | None = None
        self.previous: dict = {}
        self.flag = INTERRUPTED  # the progress callback's: no closing count of trials Tune stopped for the signal

    def _handle(self, signum, frame):
        import signal

        tune_handler = signal.getsignal(signal.SIGUSR1)
        if self.signum is not None or not callable(tune_handler):
            self.signum = self.signum or signum
            _Stopped.signum = self.signum
            raise KeyboardInterrupt
        self.signum = signum
        self.flag.set()
        tune_handler(signal.SIGUSR1, frame)

    def __enter__(self):
        import signal
        import threading

        self.flag.clear()
        if threading.current_thread() is threading.main_thread():
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards it
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        self.flag.clear()


class _QuietTuneEnding:
    """Drops Tune's own closing words on an interrupted run ("Trials did not complete", a ``Tuner.restore`` hint):
    the CLI says what to do instead, with the cifar-tune command. Also the results' "Failed to fetch metrics" for
    trials that never reported (pending ones: HyperBand creates whole brackets ahead) with a FileNotFoundError each;
    ``cifar-tune report`` reads those trials as pending, as analysis.load does."""

    LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")

    def filter(self, record) -> bool:
        msg = str(record.msg)
        return not msg.startswith(("Experiment has been interrupted", "Trials did not complete", "Stop signal",
                                   "Failed to fetch metrics"))

    def __enter__(self):
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc):
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


def run_search(spec: ExperimentSpec, resume: bool = False, callbacks=()):
    """Run (or, with ``resume``, finish) the search described by ``spec``; returns Tune's ResultGrid.

    Holds the experiment's lock (:class:`trainables.experiment.ExperimentLock`) from before Ray starts to the end.
    Raises :class:`SearchInterrupted` after a SIGINT / SIGTERM (Tune's state saved; ``--resume`` finishes it).
    ``callbacks``: extra ``ray.tune.Callback`` objects for a new search (a logger, a timer); a resumed search gets
    back the ones it was started with, from Tune's saved state.
    """
    from ray import tune

    exp_dir = Path(spec.experiment_dir)
    if resume:
        saved = check_resume(spec)
    elif _has_content(exp_dir):
        try:  # in use (a search of that name running now) or done: say which
            ExperimentLock(exp_dir, "cifar-tune search").acquire(create=False, announce=False).release()
        except ExperimentLocked as e:
            raise SpecError(str(e)) from None
        raise SpecError(f"experiment {str(exp_dir)!r} exists already: pass --resume to finish it, or a new --name")
    spaces = load_spaces(spec)  # bad spaces fail here, before Ray or any directory
    check_reachable(spec.address)  # so does a cluster address where nothing answers (ray.init would wait minutes)
    check_storage(spec.storage)  # and an object store this machine cannot reach (Tune failed inside Ray)
    if spec.mlflow:  # so does an MLflow tracking URI that does not answer (or no MLflow client)
        from search.trackers import check_mlflow

        check_mlflow(spec.mlflow)
    data = load_data(spec)  # so does missing or corrupt data
    check_data_fits(spec, data, spaces)
    warm = {} if resume else warm_start_trials(spec)
    if spec.optuna_storage:  # a database given by URL must be reachable now, not after Ray started
        check_study_storage(spec.optuna_storage)
    changed = data_change(json.loads((exp_dir / SPEC_FILE).read_text()), data) if resume else None
    if changed:  # trials resumed on other data than they started on would mix two experiments
        raise SpecError(f"--resume: the data changed since the experiment started ({changed}); restore the original "
                        f"files")
    created = not exp_dir.exists()
    try:
        lock = ExperimentLock(exp_dir, "cifar-tune search" + (" --resume" if resume else "")).acquire()
    except ExperimentLocked as e:
        raise SpecError(str(e)) from None
    try:
        if not resume and _has_content(exp_dir):  # a search that took the lock and finished while we validated
            raise SpecError(f"experiment {str(exp_dir)!r} exists already: pass --resume to finish it, or a new --name")
        init_ray(spec)
        from trainables.train import tune_trainable

        if resume:
            resources = json.loads((exp_dir / SPEC_FILE).read_text())["trial_resources"]
            data = without_test_split(data)
            trainable = tune.with_resources(tune.with_parameters(tune_trainable, data=data), resources)
            # Tune unpickles our scheduler and searcher (in restore, then in fit): they open this folder's files.
            restoring(exp_dir, None if saved.get("optuna_storage") else sqlite_url(exp_dir))
            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            try:
                tuner, resources = build_tuner(spec, data, spaces, callbacks=callbacks, warm=warm)
                write_spec(spec, data, spaces, resources)
            except BaseException:
                if created:
                    import shutil

                    shutil.rmtree(exp_dir, ignore_errors=True)  # nothing ran yet: leave no half-written experiment
                raise
        from search.trackers import replacing_ray_loggers

        with _QuietTuneEnding(), _Interrupts() as interrupts, replacing_ray_loggers(exp_dir, resume), \
                _pending_trials(spec):
            results = tuner.fit()
        if interrupts.signum is not None:
            raise SearchInterrupted(interrupts.signum, unfinished_trials(spec))
        return results
    finally:
        restoring(None)
        lock.release()


class _pending_trials:
    """Synchronous HyperBand needs a bracket's trials created together (search.hyperband.pending_trials): Tune's
    cap on trials created ahead (TUNE_MAX_PENDING_TRIALS_PG, read when fit() builds its controller) is raised for
    that search, new or resumed, and put back after it. A value the user set is left alone."""

    def __init__(self, spec: ExperimentSpec):
        self.value = None
        if spec.scheduler == "hyperband" and "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ:
            from search.hyperband import pending_trials

            self.value = str(pending_trials(spec.archs, spec.max_epochs, spec.reduction_factor))

    def __enter__(self):
        if self.value is not None:
            os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = self.value
        return self

    def __exit__(self, *exc):
        if self.value is not None:
            os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)


def _has_content(exp_dir: Path) -> bool:
    """Anything in the experiment dir but a lock file (one a killed new search left is no experiment)."""
    return exp_dir.is_dir() and any(p.name != LOCK_FILE for p in exp_dir.iterdir())


def saved_spec(exp_dir: str | os.PathLike) -> dict:
    """``spec.json``'s spec, as written when the experiment started (its storage and name say where that was)."""
    path = Path(exp_dir) / SPEC_FILE
    if not path.exists():
        raise SpecError(f"no experiment at {str(exp_dir)!r}: {SPEC_FILE} is missing")
    try:
        saved = json.loads(path.read_text())["spec"]
        if not isinstance(saved, dict):
            raise TypeError(f"'spec' is a {type(saved).__name__}, not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpecError(f"{str(path)!r} is half-written or corrupt ({type(e).__name__}: {e})") from None
    return saved


def spec_from_dir(exp_dir: str | os.PathLike, **override) -> ExperimentSpec:
    """The spec an experiment was started with (``spec.json``), found where it lies now: its storage and name are
    the folder's (never those recorded, so a copy or a moved experiment is itself); ``override`` is applied
    before it is validated. The studies keep their recorded names (``NAME-ARCH``, in the folder's optuna.db)."""
    saved = saved_spec(exp_dir)
    if "rung_ranking" not in saved:  # saved before the option: ranked as it was then
        from search.moasha import LEGACY_RANKING

        saved["rung_ranking"] = LEGACY_RANKING
    here = Path(exp_dir).expanduser().resolve()
    return ExperimentSpec(**{**saved, "storage": str(here.parent), "name": here.name, **override})


def check_resume(spec: ExperimentSpec) -> dict:
    """What a resume of ``spec``'s experiment is refused for, before anything runs or is written (SpecError): no
    experiment there, a study that cannot be read, an option other than it was started with, a folder its searcher
    cannot be resumed from. Returns the spec it was started with."""
    exp_dir = Path(spec.experiment_dir)
    if not (exp_dir / SPEC_FILE).exists():
        raise SpecError(f"--resume: no experiment at {str(exp_dir)!r} (no {SPEC_FILE})")
    saved = saved_spec(exp_dir)
    problem = unreadable_study(exp_dir, saved)
    if problem:  # Tune would unpickle the searcher into a database traceback; nothing is touched instead
        raise SpecError(f"--resume: {problem}")
    check_started_as(spec, saved)
    check_relocatable(exp_dir, saved)
    check_saved_state(exp_dir, saved)
    return saved


def check_saved_state(exp_dir: Path, saved: dict) -> None:
    """Refuse (SpecError naming the file) a resume from a truncated or corrupt Ray Tune state or scheduler record:
    Tune would log a traceback and start afresh (trials beyond num_samples), our scheduler would raise mid-restore.
    The older ``experiment_state-*.json`` beside it is no fallback: the searcher's state and the study are newer."""
    from analysis.load import ExperimentError, scheduler_record, tune_state

    try:
        tune_state(exp_dir)
        scheduler_record(exp_dir, saved, check=_state_check(saved))
    except ExperimentError as e:
        raise SpecError(f"--resume: {e}") from None


def _state_check(saved: dict):
    """The scheduler's own test of its record (what its load() reads when Tune unpickles it), for ``saved``'s
    search; None where the scheduler has none."""
    archs, max_t = saved.get("archs") or [], saved.get("max_epochs")
    if saved.get("scheduler") == "hyperband":
        from search import hyperband

        return lambda state: hyperband.check_state(state, archs, max_t, saved.get("reduction_factor"))
    if saved.get("scheduler") == "pbt":
        from search import pbt

        return lambda state: pbt.check_state(state, archs, saved.get("grace_period"), max_t)
    return None


def check_started_as(spec: ExperimentSpec, saved: dict) -> None:
    """Refuse (SpecError naming the option) a ``spec`` other than the one its experiment was started with
    (``saved``, spec.json's): Tune's saved state was built from that one, and a finished search kept is that one."""
    resume_conflict(saved, {f: getattr(spec, f) for f in RESUME_FIXED if f != "space_files"}, spec.experiment_dir,
                    whole=True)


def check_relocatable(exp_dir: Path, saved: dict) -> None:
    """A copied or moved experiment resumes with its own optuna.db because its searcher was pickled with
    :class:`search.searcher.StudyStorage`, which reopens it there. One started before that class pickled Optuna's
    plain storage with the old folder's path: refuse to resume it anywhere else than where it was started, rather
    than let it write into that folder."""
    recorded = Path(str(saved.get("storage", ""))) / str(saved.get("name", ""))
    if saved.get("optuna_storage") or saved.get("sampler") == "grid" or recorded.resolve() == exp_dir.resolve():
        return
    tuner_pkl = exp_dir / "tuner.pkl"  # Ray's pickled Tuner, which holds the searcher
    if tuner_pkl.is_file() and b"StudyStorage" not in tuner_pkl.read_bytes():
        raise SpecError(f"--resume: experiment {str(exp_dir)!r} was started at {str(recorded)!r} by an older "
                        f"cifar-tune whose saved searcher opens that folder's {OPTUNA_DB}: resume it there (move it "
                        f"back), or report and evaluate it where it is")
