"""Trackers: every trial's per-epoch metrics, config and outcome in TensorBoard (always) and MLflow (``--mlflow URI``).

TensorBoard: :class:`TensorBoardLogger` takes the place of Ray's default ``TBXLoggerCallback``. It writes an event
file straight into each trial's folder in the experiment, ``EXP/<arch>_<trial id>/events.out.tfevents.*`` (with a
storage URL: the trial's staging folder, which Ray copies there), one scalar per metric per epoch (step = epoch) and,
when the trial ends, its HParams (the trial's resolved config and its outcome). ``tensorboard --logdir EXP`` shows
them all. Ray's own logger wrote into its staging folder under the Ray session's temp directory, which Ray copies
into the experiment now and then (an interrupted or killed search keeps a stale copy), printed that temp path, and
stepped by Tune iteration; with a ``TBXLoggerCallback`` in the list Ray prints that path, so ours is a plain
logger and Ray's default loggers are switched off while a search runs (:func:`replacing_ray_loggers`); the CSV one
is kept by :func:`tracker_callbacks`, the JSON one is ``search.history.CheckpointedResults``. It is on by default: a
few kB per trial on the driver, what Ray did already.

MLflow: :class:`MLflowLogger` logs to one MLflow experiment named after ours, under one parent run holding the spec
(``spec.json`` as an artifact and its fields as params); one nested run per trial with the resolved config as
params, per-epoch metrics (step = epoch) and the outcome (tag ``outcome``: completed / stopped / diverged / errored /
interrupted; run status FINISHED, FAILED for errored, KILLED for interrupted). Ray's ``MLflowLoggerCallback`` was
not used: it opens a new run whenever a trial starts (a resumed search would duplicate every unfinished trial), knows
only FINISHED / FAILED (an ASHA stop looks like a completed trial) and has no run for the search itself; Optuna's
callback sees only a trial's final value. Runs are found again by tags (``cifar_tune.search_id``, a random id pickled
with the callback into Tune's saved state, and ``cifar_tune.trial_id``), so ``--resume`` logs into the same runs. An
epoch reaches MLflow once its checkpoint is on record, as in ``result.json`` (a retried epoch is not logged twice).
A tracking server that fails mid-search costs a warning, never the search.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import time
import uuid
from pathlib import Path

from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, LoggerCallback
from ray.tune.result import AUTO_RESULT_KEYS

from search.spec import URL, SpecError
from trainables.experiment import ERRORED, SPEC_FILE, restored_path, trial_outcome

log = logging.getLogger("cifar_tune")

MLFLOW_EXTRA = "pip install 'cifar-tune[mlflow]'"
RAY_DEFAULT_LOGGERS_OFF = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
NOT_METRICS = {*AUTO_RESULT_KEYS, "done", "should_checkpoint", "trial_id", "epoch"}  # Ray's bookkeeping; epoch: step
INTERRUPTED = "interrupted"  # a trial still running when the search was stopped (--resume continues it)
PARAM_MAX = 6000  # characters of an MLflow param value (MLflow's own limit)
PAUSE_S = 60.0  # after an MLflow call failed, the next calls wait this long (a dead server must not slow the search)


def tracker_callbacks(spec) -> list:
    """The Tune callbacks for a new search: Ray's CSV logger, TensorBoard, and MLflow when ``spec.mlflow``."""
    out = [CSVLoggerCallback(), TensorBoardLogger(spec.experiment_dir)]
    if spec.mlflow:
        out.append(MLflowLogger(spec.mlflow, spec.name, spec.experiment_dir))
    return out


@contextlib.contextmanager
def replacing_ray_loggers(exp_dir: str | os.PathLike, resume: bool):
    """Ray's default loggers off while a search runs, when its callbacks are ours (always for a new search; a resumed
    one started by an older cifar-tune gets Ray's back: its pickled callbacks lack ours)."""
    pickled = Path(exp_dir) / "tuner.pkl"  # Ray's pickled Tuner, which holds the callbacks
    ours = not resume or (pickled.is_file() and TensorBoardLogger.__name__.encode() in pickled.read_bytes())
    before = os.environ.get(RAY_DEFAULT_LOGGERS_OFF)
    if ours:
        os.environ[RAY_DEFAULT_LOGGERS_OFF] = "1"
    try:
        yield
    finally:
        if ours:
            if before is None:
                os.environ.pop(RAY_DEFAULT_LOGGERS_OFF, None)
            else:
                os.environ[RAY_DEFAULT_LOGGERS_OFF] = before


def loggable_number(value) -> bool:
    """A number TensorBoard and MLflow take as one: a float, or an int that fits in 64 bits (tensorboardX turns a
    larger Python int into an object array and fails on it; MLflow stores doubles and 64-bit ints)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, float) or (isinstance(value, int) and -2**63 <= value < 2**63)


def metrics_of(result: dict) -> dict:
    """The numbers a trial reported for one epoch (not Ray's bookkeeping, not flags, none too big to log)."""
    return {k: v for k, v in result.items() if k not in NOT_METRICS and loggable_number(v)}


def hparam_values(config: dict) -> dict:
    """``config`` as HParams values: booleans, strings and numbers as they are; anything else as text, a number
    too big to log as one included (``{"batch_size": 10**25}`` is logged as the text "10000...", never a crash)."""
    return {k: v if isinstance(v, (bool, str)) or loggable_number(v) else json.dumps(v, default=str)
            for k, v in config.items()}


def resolved_config(trial) -> dict:
    """The trial's config as it ran (defaults and the net's report setting filled in), unset knobs left out."""
    from trainables.config import resolve_config

    try:
        config = resolve_config(trial.config)
    except Exception:  # a config the trial itself refused: it errored, and its config is still worth recording
        config = dict(trial.config)
    return {k: v for k, v in config.items() if v is not None}


def _experiment_path(exp_dir: str) -> str:
    """Where the experiment lies now (a resumed copy is found where it is; see trainables.experiment)."""
    return exp_dir if URL.match(exp_dir) else str(restored_path(Path(exp_dir) / SPEC_FILE).parent)


# --------------------------------------------------------------------------------------------- TensorBoard

class TensorBoardLogger(LoggerCallback):
    """One event file per trial in its own folder: a scalar per metric per epoch, and HParams when it ends."""

    def __init__(self, experiment_dir: str):
        self.experiment_dir = experiment_dir
        self._writers: dict = {}  # trial_id -> SummaryWriter
        self._last: dict = {}  # trial_id -> the last epoch's metrics (the HParams' metric values)

    def __getstate__(self):  # Tune pickles its callbacks; open writers are not state
        return {**self.__dict__, "_writers": {}, "_last": {}}

    def setup(self, *args, **kwargs):
        print(f"TensorBoard: tensorboard --logdir {shlex.quote(_experiment_path(self.experiment_dir))}", flush=True)

    def log_trial_start(self, trial):
        from tensorboardX import SummaryWriter

        self._close(trial.trial_id)
        exp = _experiment_path(self.experiment_dir)
        trial.init_local_path()
        if URL.match(exp):  # remote storage: the trial's staging folder, which Ray copies there with result.json
            logdir = trial.local_path
        else:  # straight into the experiment's trial folder: live, and kept by a killed search (Ray copies only
            # its own staged files there, and a resume fetches only .json/.pkl files, so none touches this one)
            logdir = str(Path(exp) / Path(trial.local_path).name)
        # tensorboardX writes from a thread and flushes every flush_secs: the view trails by at most that
        self._writers[trial.trial_id] = SummaryWriter(logdir, flush_secs=5)

    def log_trial_result(self, iteration: int, trial, result: dict):
        if trial.trial_id not in self._writers:
            self.log_trial_start(trial)
        writer = self._writers[trial.trial_id]
        step = result.get("epoch", iteration)
        metrics = metrics_of(result)
        for name, value in metrics.items():
            writer.add_scalar(name, value, global_step=step)
        writer.flush()
        self._last[trial.trial_id] = metrics

    def log_trial_end(self, trial, failed: bool = False):
        if trial.trial_id not in self._writers:
            self.log_trial_start(trial)
        outcome = ERRORED if failed else trial_outcome("TERMINATED", trial.last_result)
        self._write_hparams(self._writers[trial.trial_id], {**resolved_config(trial), "outcome": outcome},
                            self._last.get(trial.trial_id, {}), failed=outcome == ERRORED)
        self._close(trial.trial_id)

    def on_experiment_end(self, trials, **info):
        for trial_id in list(self._writers):  # interrupted trials: no HParams yet (they are written when they end)
            self._close(trial_id)

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        self._last.pop(trial_id, None)
        if writer is not None:
            writer.close()

    @staticmethod
    def _write_hparams(writer, hparams: dict, metrics: dict, failed: bool) -> None:
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
        from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboardX.summary import hparams as hparams_summaries

        experiment, start, _ = hparams_summaries(hparam_values(hparams), metrics_of(metrics))
        # tensorboardX always says STATUS_SUCCESS; an errored trial says so in the HParams table
        status = Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS")
        content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=0)
        end = Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=SummaryMetadata(
            plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content.SerializeToString())))])
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary)
        writer.flush()


# --------------------------------------------------------------------------------------------- MLflow

def _mlflow_client(uri: str):
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise SpecError(f"--mlflow {uri}: the MLflow client is not installed: {MLFLOW_EXTRA}") from None
    return MlflowClient(tracking_uri=uri)


def _reason(error: BaseException) -> str:
    """An MLflow client error in one short line (its messages nest the whole urllib3 retry story)."""
    text = str(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno:
        return errno.group().strip()
    if "unsupported URI" in text or "registered tracking store" in text:  # MLflow words it as a registry problem
        return "MLflow supports no such URI scheme (http, https, file, databricks, sqlite, postgresql, ...)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def check_mlflow(uri: str) -> None:
    """The tracking URI answers now (before Ray starts): else one SpecError naming it (or the missing client)."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    before = {k: os.environ.get(k) for k in quick}
    os.environ.update(quick)
    try:
        _mlflow_client(uri).search_experiments(max_results=1)
    except SpecError:
        raise
    except Exception as e:  # refused, unresolvable, not an MLflow server, unknown scheme
        raise SpecError(f"--mlflow {uri}: cannot use this MLflow tracking URI ({_reason(e)})") from None
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class MLflowLogger(Callback):
    """A parent run for the search (its spec), a nested run per trial (config, per-epoch metrics, outcome)."""

    def __init__(self, uri: str, experiment_name: str, experiment_dir: str):
        self.uri, self.experiment_name, self.experiment_dir = uri, experiment_name, experiment_dir
        self.search_id = uuid.uuid4().hex  # pickled into Tune's state: a resume finds its runs by it
        self._fresh()

    def __getstate__(self):  # Tune pickles its callbacks: the settings, not the connection or what is in flight
        return {k: self.__dict__[k] for k in ("uri", "experiment_name", "experiment_dir", "search_id")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fresh()

    def _fresh(self) -> None:
        self._client = self._experiment_id = self._parent = None
        self._runs: dict[str, str] = {}  # trial_id -> run_id
        self._ended: set[str] = set()  # trials that ended (completed, stopped, diverged, errored) in this session
        self._total = 0
        self._held: dict[str, list[dict]] = {}  # trial_id -> epochs whose checkpoint is not on record yet
        self._paused_until = 0.0

    # Tune's hooks ---------------------------------------------------------------------------------------------
    def setup(self, *args, total_num_samples: int | None = None, **kwargs):
        self._total = total_num_samples or 0
        # A server that stops answering mid-search: a few quick retries, not MLflow's minutes of backoff per call.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # two lines per run otherwise
        self._call("open the experiment", self._ready)
        where = (f"{self.uri.rstrip('/')}/#/experiments/{self._experiment_id}"
                 if self._experiment_id and self.uri.startswith(("http://", "https://")) else self.uri)
        print(f"MLflow: one run per trial in experiment {self.experiment_name!r}: {where}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._call("create the trial's run", self._run_of, trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step = result.get("epoch", result.get("training_iteration", iteration))
        stamp = int(1000 * result.get("timestamp", time.time()))
        self._held.setdefault(trial.trial_id, []).append({"step": step, "timestamp": stamp,
                                                          "metrics": metrics_of(result)})

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._call("log metrics", self._flush, trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._held.pop(trial.trial_id, None)  # the retry trains these epochs again and reports them afresh

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended.add(trial.trial_id)
        self._call("log metrics", self._flush, trial)
        self._call("end the trial's run", self._end, trial, trial_outcome("TERMINATED", trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended.add(trial.trial_id)
        self._call("log metrics", self._flush, trial)
        self._call("end the trial's run", self._end, trial, ERRORED)

    def on_experiment_end(self, trials, **info):
        # Stopped by a signal, Tune marks its running trials TERMINATED without telling the callbacks: a trial run
        # this session that did not end through on_trial_complete / on_trial_error was interrupted.
        interrupted = [t for t in trials if t.trial_id in self._runs and t.trial_id not in self._ended]
        for trial in interrupted:
            self._held.pop(trial.trial_id, None)  # --resume trains them again from the recorded checkpoint
            self._call("mark the run interrupted", self._end, trial, INTERRUPTED)
        done = not interrupted and len(trials) >= self._total and all(
            t.status in ("TERMINATED", "ERROR") for t in trials)
        if self._parent:
            self._call("end the search's run", lambda: self._client.set_terminated(
                self._parent, "FINISHED" if done else "KILLED"))

    # MLflow ---------------------------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args):
        """``fn(*args)``; an MLflow failure is a warning (the search goes on) and pauses the next calls a while."""
        if time.monotonic() < self._paused_until:
            return None
        try:
            return fn(*args)
        except Exception as e:
            self._paused_until = time.monotonic() + PAUSE_S
            log.warning("MLflow %s: could not %s (%s); the search goes on, MLflow is tried again in %.0f s",
                        self.uri, what, _reason(e), PAUSE_S)
            return None

    def _tagged(self, client, **tags) -> list:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in {"cifar_tune.search_id": self.search_id,
                                                                **tags}.items())
        return client.search_runs([self._experiment_id], filter_string=query, max_results=2)

    def _ready(self):
        """The client, the MLflow experiment and the search's run, opened (or found again) on first use."""
        if self._client is not None:
            return self._client
        client = _mlflow_client(self.uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        self._experiment_id = (experiment.experiment_id if experiment is not None
                               else client.create_experiment(self.experiment_name))
        found = self._tagged(client, **{"cifar_tune.role": "search"})
        path = _experiment_path(self.experiment_dir)
        if found:  # a resumed search
            parent = found[0].info.run_id
            client.update_run(parent, status="RUNNING")
        else:
            parent = client.create_run(self._experiment_id, run_name=self.experiment_name, tags={
                "cifar_tune.search_id": self.search_id, "cifar_tune.role": "search",
                "cifar_tune.experiment_dir": path}).info.run_id
            record = _read_spec(path)
            self._log_params(client, parent, {**record.get("spec", {}), "command": record.get("command", "")})
        if not URL.match(path) and (Path(path) / SPEC_FILE).is_file():
            client.log_artifact(parent, str(Path(path) / SPEC_FILE))  # again on resume: the same file
        self._client, self._parent = client, parent
        return client

    def _run_of(self, trial) -> str:
        client = self._ready()
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            found = self._tagged(client, **{"cifar_tune.trial_id": trial.trial_id})
            if found:  # a resumed search: the trial's own run goes on
                run_id = found[0].info.run_id
                client.update_run(run_id, status="RUNNING")
                client.set_tag(run_id, "outcome", "running")
            else:
                from search.tuner import trial_dirname

                run_id = client.create_run(self._experiment_id, run_name=trial_dirname(trial), tags={
                    "cifar_tune.search_id": self.search_id, "cifar_tune.trial_id": trial.trial_id,
                    "arch": str(trial.config.get("arch", "")), "outcome": "running",
                    **({"mlflow.parentRunId": self._parent} if self._parent else {})}).info.run_id
                self._log_params(client, run_id, resolved_config(trial))
            self._runs[trial.trial_id] = run_id
        return run_id

    def _flush(self, trial) -> None:
        from mlflow.entities import Metric

        held = self._held.get(trial.trial_id)
        if not held:
            return
        metrics = [Metric(k, float(v), row["timestamp"], row["step"]) for row in held for k, v in
                   row["metrics"].items()]
        run_id = self._run_of(trial)
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self._client.log_batch(run_id, metrics=metrics[i:i + 1000])
        self._held.pop(trial.trial_id, None)

    def _end(self, trial, outcome: str) -> None:
        run_id = self._run_of(trial)
        self._client.set_tag(run_id, "outcome", outcome)
        status = {ERRORED: "FAILED", INTERRUPTED: "KILLED"}.get(outcome, "FINISHED")
        self._client.set_terminated(run_id, status)

    @staticmethod
    def _log_params(client, run_id: str, values: dict) -> None:
        from mlflow.entities import Param

        params = [Param(k, (v if isinstance(v, str) else json.dumps(v, default=str))[:PARAM_MAX])
                  for k, v in values.items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit for params
            client.log_batch(run_id, params=params[i:i + 100])


def _read_spec(path: str) -> dict:
    try:
        return json.loads((Path(path) / SPEC_FILE).read_text())
    except (OSError, ValueError):  # a URL storage, or not written yet
        return {}
