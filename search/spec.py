"""The experiment spec: everything a search needs, validated when built, stored as ``spec.json``.

Every argument is checked in ``__post_init__`` and a bad one raises :class:`SpecError` quoting it, so the CLI can
refuse bad input before Ray starts or an experiment directory exists.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainables.config import MAX_EPOCHS, ConfigError, is_count, shown, validate_value
from trainables.experiment import OPTUNA_DB
from trainables.objectives import DEFAULT_RANKING

SHARED_FS_TYPES = ("nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "fuse.s3fs",
                   "fuse.gcsfuse", "fuse.juicefs", "fuse.sshfs", "9p", "virtiofs", "efs", "fuse.mountpoint-s3")
URL = re.compile(r"^[a-z][a-z0-9+.-]*://")
# The URL schemes pyarrow.fs.FileSystem.from_uri (what Ray Tune writes results through) resolves; tests/test_search.py
# checks each against the installed pyarrow.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ADDRESS = re.compile(r"^(auto|local|ray://\S+|[^\s:/]+:\d{1,5})$")


SAMPLERS = ("tpe", "tpe-plain", "random", "nsga2", "grid")  # search.searcher.make_sampler builds all but grid
# The report plans' sampler (reproduce, --preset NAME:tuned), whatever the default: their budget rules count TPE's
# start-up trials (search/reproduce_plans.py) and their published records ran it.
PLAN_SAMPLER = "tpe"
TPE_STARTUP = 5  # trials TPE samples at random (Optuna's RandomSampler, the same seed) before it models
SCHEDULERS = ("asha", "hyperband", "pbt", "none")  # docs/schedulers.md says what each does here
PERTURBABLE = ("lr", "weight_decay", "dropout", "label_smoothing")  # what PBT may change in a running trial


# HyperBand makes hyperband_brackets(max_epochs, eta) brackets per net, each starting its trials at its own epoch
# (max_epochs / eta^s); more brackets than epochs repeat a start, and the first bracket (s = 0, which halves nothing)
# alone takes one trial per bracket before any other bracket gets one. So at most one per epoch, and never more than
# MAX_BRACKETS (eta >= 1.25 at 10^6 epochs; the usual eta of 2-4 gives <= 20): far beyond, building the brackets
# alone (quadratic in their count) hung before a trial ran.
MAX_BRACKETS = 64
COUNT_MAX = 10**9  # trials, failures, concurrency, an epoch budget: above it a typo, and Ray's int64 overflows


def hyperband_brackets(max_epochs: int, reduction_factor: float) -> int:
    """How many brackets synchronous HyperBand makes per net (Ray's s_max + 1, empty ones included).

    >>> hyperband_brackets(9, 3), hyperband_brackets(100, 1.0001)
    (3, 46055)
    """
    return int(round(math.log(max_epochs) / math.log(reduction_factor))) + 1


def perturbable(params: dict) -> dict:
    """Of a space's params (name -> ``Param.to_dict()``), those PBT may perturb: in PERTURBABLE, a float or a
    categorical, searched without a ``when`` condition (a conditional one is absent from some configs)."""
    return {name: dict(p) for name, p in params.items()
            if name in PERTURBABLE and not p.get("when") and p.get("type") in ("float", "categorical")}


class SpecError(ValueError):
    """A search argument is invalid; the message names it and the bad value."""


def default_storage() -> str:
    return str(Path(os.environ.get("CIFAR_TUNE_RESULTS", Path.home() / "cifar-tune-results")).resolve())


@dataclass
class ExperimentSpec:
    archs: list[str]
    num_samples: int = 16  # trials per architecture
    max_epochs: int = 8
    grace_period: int = 1  # epochs before ASHA may stop a trial
    reduction_factor: float = 3.0
    scheduler: str = "asha"  # asha | hyperband | pbt | none (SCHEDULERS)
    # One of SAMPLERS (grid: a preset's rows). random: TPE's picks were no better than random sampling's over 10
    # paired seeds on two nets at 22-36 trials per search (docs/benchmarks.md, "HPO efficiency"); tpe is one flag
    # away, and reproduce / --preset NAME:tuned keep it (the protocol their budget rules and records were made with).
    sampler: str = "random"
    seed: int = 0
    fixed: dict = field(default_factory=dict)  # --set values, in every trial
    space_files: dict = field(default_factory=dict)  # arch -> YAML path (empty: shipped)
    grid: list = field(default_factory=list)  # explicit configs for sampler="grid"
    name: str = ""
    storage: str = ""
    optuna_storage: str = ""  # SQLAlchemy URL; empty: sqlite file in the experiment dir
    warm_start: str = ""  # earlier experiment dir or Optuna storage URL whose studies seed this one
    address: str = ""  # empty: embedded Ray on this machine
    storage_is_shared: bool = False  # the user vouches a path is visible on every node
    max_concurrent: int = 0  # 0: as many as the resources allow
    cpus_per_trial: float = 0  # 0: picked from the hardware
    gpus_per_trial: float = -1  # -1: picked from the hardware
    max_failures: int = 1
    preset: str = ""
    epoch_budget: int = 0  # per architecture, enforced by the scheduler (0: none); see search/scheduler.py
    enqueue: dict = field(default_factory=dict)  # arch -> configs every study tries first (e.g. the report's own)
    objectives: list = field(default_factory=list)  # [[metric, max|min], ...]: empty = val_accuracy alone
    rung_ranking: str = DEFAULT_RANKING  # MO-ASHA's order within a front (trainables.objectives.RANKINGS)
    mlflow: str = ""  # MLflow tracking URI every trial is logged to (search/trackers.py); empty: none
    nets: dict = field(default_factory=dict)  # arch -> a user's net: {ref, resolved, path, sha256[, entry_point]}

    def __post_init__(self):
        if not self.archs:
            raise SpecError("no architecture given: use --arch a[,b,...] or --preset NAME")
        self._resolve_nets()
        if len(set(self.archs)) != len(self.archs):
            raise SpecError(f"--arch: an architecture is listed twice: {','.join(self.archs)}")
        for key, low, high in (("num_samples", 1, COUNT_MAX), ("max_epochs", 1, MAX_EPOCHS),
                               ("grace_period", 1, MAX_EPOCHS), ("max_failures", 0, COUNT_MAX),
                               ("max_concurrent", 0, COUNT_MAX), ("epoch_budget", 0, COUNT_MAX)):
            # max_epochs: past MAX_EPOCHS every trial would be refused its epochs, after Ray started
            value = getattr(self, key)
            if not is_count(value, low):
                raise SpecError(f"--{key.replace('_', '-')} must be an integer >= {low}, got {value!r}")
            if value > high:
                raise SpecError(f"--{key.replace('_', '-')} must be at most {high:,}, got {shown(value)}")
        top = 2**32 - len(self.archs)  # net i's sampler is seeded seed + i, and numpy's seeds stop below 2**32
        if not is_count(self.seed) or self.seed > top:
            raise SpecError(f"--seed must be an integer in [0, {top}] (net i's sampler gets seed + i, below 2**32), "
                            f"got {self.seed!r}")
        if self.scheduler not in SCHEDULERS:
            raise SpecError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.epoch_budget and self.scheduler != "asha":
            raise SpecError(f"--epoch-budget {self.epoch_budget} needs --scheduler asha: {self.scheduler} cannot "
                            f"enforce an epoch budget")
        if self.epoch_budget and self.epoch_budget < self.num_samples * self.grace_period:
            raise SpecError(f"--epoch-budget {self.epoch_budget} cannot pay the first rung of every trial: "
                            f"--num-samples {self.num_samples} x --grace-period {self.grace_period} = "
                            f"{self.num_samples * self.grace_period} epochs")
        if self.grace_period > self.max_epochs:
            raise SpecError(f"--grace-period {self.grace_period} exceeds --max-epochs {self.max_epochs}")
        self.reduction_factor = _reduction_factor(self.reduction_factor)
        if self.sampler not in SAMPLERS:
            raise SpecError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.warm_start and self.sampler == "random":
            raise SpecError("--warm-start seeds TPE's model with an earlier search's trials, but --sampler is random "
                            "(the default), which draws without looking at them: add --sampler tpe")
        if self.sampler == "grid" and not self.grid:
            raise SpecError("--sampler grid runs a report's own grid: use --preset NAME:grid (see cifar-tune presets)")
        if not self.cpus_per_trial >= 0 or not math.isfinite(self.cpus_per_trial):  # nan: no trial ever placed
            raise SpecError(f"--cpus-per-trial must be a number >= 0, got {self.cpus_per_trial!r}")
        if not math.isfinite(self.gpus_per_trial) or self.gpus_per_trial != -1 and not 0 <= self.gpus_per_trial:
            raise SpecError(f"--gpus-per-trial must be >= 0, got {self.gpus_per_trial!r}")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise SpecError(f"--gpus-per-trial above 1 must be a whole number, got {self.gpus_per_trial!r}")
        for key, value in self.fixed.items():
            if key in ("arch", "net", "net_sha256"):
                raise SpecError(f"--set {key}=... is not allowed in a search: use --arch")
            try:
                self.fixed[key] = validate_value(key, value)
            except ConfigError as e:
                raise SpecError(f"--set {e}") from None
        if "epochs" in self.fixed:
            raise SpecError("--set epochs=... is not allowed in a search: use --max-epochs")
        self._check_objectives()
        self._check_scheduler()
        from trainables.config import resolve_config

        for a in self.archs:  # e.g. --set stem=cifar with a net that has no stem: refuse now, not in every trial
            try:
                resolve_config({**self.fixed, "arch": a})
            except ConfigError as e:
                raise SpecError(f"--set {e} (arch {a})") from None
        self.name = self.name or _dt.datetime.now().strftime("search-%Y%m%d-%H%M%S")
        if not NAME.match(self.name):
            raise SpecError(f"--name must be letters, digits, '_', '.', '-', got {self.name!r}")
        self.storage = self.storage or default_storage()
        if not URL.match(self.storage):
            self.storage = str(Path(self.storage).expanduser().resolve())
        check_name_fits(self.name, self.storage, [] if self.sampler == "grid" else self.archs)
        if URL.match(self.storage):  # refused here, not by Ray once it has started (and made a folder 'foo:')
            scheme = self.storage.split("://", 1)[0]
            if scheme not in STORAGE_SCHEMES:
                raise SpecError(f"--storage {self.storage!r}: Ray Tune cannot write to a {scheme}:// URL (pyarrow "
                                f"knows {', '.join(STORAGE_SCHEMES)}); or give a directory")
            if not self.optuna_storage:
                raise SpecError(f"--storage {self.storage!r} is a URL: give the Optuna study a database too with "
                                f"--optuna-storage URL (sqlite cannot live on object storage)")
        else:
            check_storage_dir(self.storage)
        check_address(self.address)
        if self.optuna_storage and not URL.match(self.optuna_storage):
            raise SpecError(f"--optuna-storage must be a database URL such as postgresql+psycopg2://USER@HOST/DB or "
                            f"sqlite:////path/to/studies.db, got {self.optuna_storage!r}")
        if not isinstance(self.mlflow, str) or any(c.isspace() for c in self.mlflow):
            raise SpecError(f"--mlflow must be a tracking URI such as http://127.0.0.1:5000, got {self.mlflow!r}")
        if self.mlflow.startswith((".", "~")):  # a local store: the same folder whichever directory resumes it
            self.mlflow = str(Path(self.mlflow).expanduser().resolve())
        # "local": a Ray of our own on this machine (e.g. resuming at home an experiment a cluster ran), no other node.
        if self.address not in ("", "local") and not URL.match(self.storage) and not self.storage_is_shared:
            fs = filesystem_type(self.storage)
            if fs not in SHARED_FS_TYPES:
                raise SpecError(
                    f"--storage {self.storage!r} is on a node-local filesystem ({fs}); with --address the trials run "
                    f"on other nodes and their results would be lost. Use a path every node mounts (NFS, Lustre, ...) "
                    f"or a URL such as s3://bucket/path, or pass --storage-is-shared if this path really is shared.")

    def _resolve_nets(self) -> None:
        """Registry names stay; a user's net (a reference or an entry point) is loaded now, before Ray, and listed
        under its short name with its identity (an experiment read back loads the recorded file, and refuses a
        changed one)."""
        from trainables.models import resolve_arch
        from trainables.plugins import PluginError

        archs = []
        for a in self.archs:
            known = self.nets.get(a)
            try:
                spec = (resolve_arch(known["resolved"], sha256=known["sha256"], name=a) if known
                        else resolve_arch(a))
            except PluginError as e:
                raise SpecError(str(e)) from None
            except ValueError as e:
                raise SpecError(f"--arch: {e}") from None
            if spec.source:
                self.nets[spec.name] = {**spec.source, "ref": known["ref"] if known else a}
                if a != spec.name and a in self.space_files:
                    self.space_files[spec.name] = self.space_files.pop(a)
            archs.append(spec.name)
        self.archs = archs

    def _check_scheduler(self) -> None:
        """hyperband and pbt: the combinations they cannot honour are refused here, naming the value."""
        s = self.scheduler
        if s not in ("hyperband", "pbt"):
            return
        if self.objectives:
            raise SpecError(f"--scheduler {s} with --objectives: a multi-objective search stops trials with MO-ASHA; "
                            f"use --scheduler asha (or none)")
        if self.sampler == "grid":
            raise SpecError(f"--scheduler {s} with --sampler grid: a grid runs the report's rows to their own epochs; "
                            f"use --preset NAME:tuned (or --arch) to search")
        if s == "hyperband" and self.grace_period != 1:
            raise SpecError(f"--grace-period {self.grace_period} with --scheduler hyperband: HyperBand sets each "
                            f"bracket's first milestone itself (max-epochs / reduction-factor^s); leave it out")
        if s == "hyperband":
            count, most = hyperband_brackets(self.max_epochs, self.reduction_factor), min(self.max_epochs, MAX_BRACKETS)
            if count > most:
                why = "one per epoch" if most < MAX_BRACKETS else "whatever --max-epochs"
                raise SpecError(f"--reduction-factor {self.reduction_factor:g} with --scheduler hyperband and "
                                f"--max-epochs {self.max_epochs}: HyperBand would make {count:,} brackets per net "
                                f"(round(log(max-epochs) / log(reduction-factor)) + 1), the first alone training "
                                f"{count:,} trials to the end; at most {most} are allowed ({why}): give a larger "
                                f"factor, e.g. 3")
        if s != "pbt":
            return
        if self.num_samples < 2:
            raise SpecError(f"--num-samples {self.num_samples} with --scheduler pbt: a population of one has no one "
                            f"to copy from; give 2 or more")
        if self.grace_period >= self.max_epochs:
            raise SpecError(f"--grace-period {self.grace_period} with --scheduler pbt (epochs between perturbations) "
                            f"must be below --max-epochs {self.max_epochs}, or PBT never acts")
        population = self.num_samples * len(self.archs)
        if self.max_concurrent and self.max_concurrent < population:
            raise SpecError(f"--max-concurrent {self.max_concurrent} with --scheduler pbt: PBT needs its whole "
                            f"population ({population} trials) live at once; it takes turns on the hardware itself")
        from spaces import SpaceError, load_space

        for arch in self.archs:
            try:
                space = load_space(arch, self.space_files.get(arch))
            except SpaceError as e:
                raise SpecError(f"--space: {e}") from None
            params = {k: p.to_dict() for k, p in space.params.items() if k not in self.fixed}
            if not perturbable(params):
                pinned = [k for k in PERTURBABLE if k in self.fixed]
                why = f" (--set fixes {', '.join(pinned)})" if pinned else ""
                raise SpecError(f"--scheduler pbt with --arch {arch}: its space ({space.source}) searches none of "
                                f"{', '.join(PERTURBABLE)} without a condition{why}, so PBT has nothing to perturb")

    def _check_objectives(self) -> None:
        from trainables.config import FIELDS
        from trainables.objectives import MEASURED, RANKINGS, ObjectiveError, parse_objectives

        if self.rung_ranking not in RANKINGS:
            raise SpecError(f"--rung-ranking must be one of {', '.join(RANKINGS)}, got {self.rung_ranking!r}")
        if isinstance(self.objectives, str):
            refuse_blank_objectives(self.objectives)
        if not self.objectives:
            return
        try:
            self.objectives = [list(o) for o in parse_objectives(self.objectives)]
        except ObjectiveError as e:
            raise SpecError(f"--objectives: {e}") from None
        if self.sampler == "grid":
            raise SpecError("--objectives: a grid preset runs fixed rows; objectives need a sampler (tpe, nsga2, ...)")
        if self.warm_start:  # its studies have one objective (or others): their trials cannot seed these
            raise SpecError("--objectives with --warm-start is not supported: the earlier studies' values are not "
                            "these objectives")
        batch = self.fixed.get("latency_batch", FIELDS["latency_batch"][1])
        for name, _ in self.objectives:
            if name in MEASURED and (not batch or (name == "inference_images_per_s" and batch < 2)):
                raise SpecError(f"--objectives {name}: needs inference measured in every trial, but "
                                f"--set latency_batch={batch}")

    @property
    def experiment_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def study_storage(self) -> str:
        if self.optuna_storage:  # always, with a URL --storage (refused without one when the spec is built)
            return self.optuna_storage
        return f"sqlite:///{self.experiment_dir}/{OPTUNA_DB}"

    def to_dict(self) -> dict:
        return asdict(self)


def check_address(address) -> None:
    """A Ray ``--address`` (auto, local, HOST:PORT, ray://HOST:PORT) or SpecError naming it; None and "" are the
    default (a Ray of this machine's own). For search, and for evaluate before any of its work."""
    if address is None or address == "":
        return
    if not isinstance(address, str) or not ADDRESS.match(address):
        raise SpecError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got {address!r}")


def check_storage_dir(storage: str) -> None:
    """A local --storage must be a folder, or one that can be made: neither it nor a folder above it is a file
    (mkdir would raise NotADirectoryError once work had started)."""
    path = Path(storage)
    here = next((p for p in (path, *path.parents) if p.exists()), None)
    if here is not None and not here.is_dir():
        raise SpecError(f"--storage {storage!r} exists and is not a directory" if here == path else
                        f"--storage {storage!r}: {str(here)!r}, a folder on its path, is a file")


def _reduction_factor(value) -> float:
    """--reduction-factor as a float (Ray's schedulers take it into numpy, which cannot hold an int of 2**63 or
    more), or SpecError naming it: a finite number > 1."""
    try:
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number) or not number > 1:
        shown = repr(value)
        if len(shown) > 40:  # 10**400 from the Python API
            shown = f"{shown[:20]}... ({len(shown)} {'digits' if isinstance(value, int) else 'characters'})"
        raise SpecError(f"--reduction-factor must be a finite number > 1, got {shown}")
    return number


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding ``path`` (longest mount-point prefix in /proc/mounts), or 'unknown'."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    p = p.resolve()
    best, fstype = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fstype
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (str(p) == mount or str(p).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, fstype = mount, parts[2]
    return fstype


def refuse_blank_objectives(text: str) -> None:
    """``--objectives ""`` is a value lost on the way (an empty shell variable), not a request for one objective."""
    if not text.strip():
        raise SpecError(f"--objectives {text!r}: empty; give two or more, e.g. val_accuracy:max,params:min, or leave "
                        f"the option out for val_accuracy alone")
    if any(not part.strip() for part in text.split(",")):  # 'a,,b': a typo, not two objectives
        raise SpecError(f"--objectives {text!r}: an empty name in the comma-separated list")


def check_name_fits(name: str, storage: str, archs: list[str]) -> None:
    """The experiment's folder name must fit the filesystem (NAME_MAX of the storage, and of Ray's temporary dir,
    which holds a folder of the same name) and each net's study name Optuna's column: refused here, before
    anything is made, instead of as ENAMETOOLONG from deep inside Ray or a database error mid-search."""
    import tempfile

    from trainables.experiment import STUDY_NAME_MAX, study_name

    if not URL.match(storage):
        for part in Path(storage).parts[1:]:
            if len(part.encode()) > _name_max(storage):
                raise SpecError(f"--storage {storage!r}: the folder name {part[:40]!r}... is {len(part.encode())} "
                                f"bytes; the filesystem allows {_name_max(storage)}")
        for where in (storage, tempfile.gettempdir()):
            limit = _name_max(where)
            if len(name.encode()) > limit:
                raise SpecError(f"--name {name[:40]}... is {len(name.encode())} characters; the filesystem of "
                                f"{where!r} allows {limit} per folder name")
    for arch in archs:
        study = study_name(name, arch)
        if len(study) > STUDY_NAME_MAX:
            raise SpecError(f"--name {name[:40]}... is {len(name)} characters: its Optuna study name {study[:20]}..."
                            f"-{arch} would be {len(study)}, the study database allows {STUDY_NAME_MAX}")


def _name_max(path: str) -> int:
    """NAME_MAX of the filesystem holding ``path`` (its nearest existing parent); 255 where it cannot be asked."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return os.pathconf(p, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


# What a resume cannot change. Tune's saved state (the trial count, the trials' configs and resources, ASHA's rungs,
# the studies and their samplers) was built from these, and Tuner.restore takes none of them anew: given again with
# --resume (or to the library's run_search), each must equal the experiment's own value, or the resume is refused.
RESUME_FIXED = ("archs", "preset", "grid", "num_samples", "max_epochs", "grace_period", "reduction_factor",
                "epoch_budget", "scheduler", "sampler", "seed", "objectives", "rung_ranking", "fixed",
                "space_files", "optuna_storage", "warm_start", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
                "max_failures", "mlflow")
FLAGS = {"archs": "--arch", "grid": "--preset", "space_files": "--space"}


def resume_conflict(saved: dict, given: dict, exp_dir: str, whole: bool = False) -> None:
    """Refuse (SpecError naming the flag) a value in ``given`` (field -> value; ``fixed`` key by key) that differs
    from ``saved`` (spec.json's spec); a field ``saved`` lacks (an older experiment) is not compared. ``whole``:
    ``given`` is a whole spec, so a ``fixed`` key it lacks was dropped (a value fixed before, searched now)."""
    def plain(value):  # as spec.json holds it: tuples are lists, and 3 == 3.0
        return json.loads(json.dumps(value, default=str))

    def as_flag(value) -> str:
        if isinstance(value, dict):  # space_files: arch -> file
            value = sorted(set(value.values()))
        if isinstance(value, (list, tuple)):
            items = [":".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in value]
            return ",".join(items) or "(none)"
        return str(value)

    def refuse(flag: str, value: str, was: str) -> None:
        raise SpecError(f"{flag} {value}: experiment {exp_dir!r}, which this resumes, was started with {was}; a "
                        f"resume finishes the search as it was started: leave the option out (or give the same), or "
                        f"start a new --name")

    for key, value in given.items():
        if key not in saved:
            continue
        if key == "archs" and saved.get("nets"):  # a net of the user's given again by its reference: its name
            value = [_net_name(v, saved["nets"]) for v in value]
        if key != "fixed":
            if plain(value) != plain(saved[key]):
                flag = FLAGS.get(key, "--" + key.replace("_", "-"))
                refuse(flag, as_flag(value), f"{flag} {as_flag(saved[key])}")
            continue
        before = saved[key] or {}
        for k in sorted(set(value) | (set(before) if whole else set())):
            if k in value and k in before and plain(value[k]) == plain(before[k]):
                continue
            if k == "data_dir":
                refuse("--data-dir", str(value.get(k, "(none)")),
                       f"--data-dir {before[k]}" if k in before else "no --data-dir")
            refuse("--set", f"{k}={value[k]}" if k in value else f"{k} not given",
                   f"--set {k}={before[k]}" if k in before else f"no --set {k}")


def _net_name(given: str, nets: dict) -> str:
    """The recorded name of the user's net ``given`` refers to (as typed, or the same file), else ``given``."""
    from trainables.plugins import PluginError, absolute_ref, is_ref

    for name, net in nets.items():
        try:
            if given == net.get("ref") or (is_ref(given) and absolute_ref(given) == net.get("resolved")):
                return name
        except PluginError:
            return given
    return given
