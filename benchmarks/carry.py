"""A reproduction's progress carried across machines that keep nothing but the repository.

    python -m benchmarks.carry save ~/runs/reproduce-report001     # -> benchmarks/carried/reproduce-report001.tar.gz
    python -m benchmarks.carry restore benchmarks/carried/reproduce-report001.tar.gz --storage ~/runs
    python -m benchmarks.carry save ~/runs/hpo-efficiency          # a benchmark's storage: its finished units

``cifar-tune reproduce`` continues a killed run with the same command, but only on a machine that kept its storage.
This project's machines keep only the repository between sessions, so a run of hours is saved, at its finished
stages, into a small archive that is committed, and restored on the next machine before the same command runs again.

What is carried from a reproduction: its state (``reproduce.json``, its table), and for every net whose search finished
its whole experiment folder but the checkpoints and the ``report`` folder (trial results and histories, the Optuna
study, Tune's state, the spec, the evaluation's saved final runs and its test-split ledger; ``cifar-tune report``
writes the report again from them). A finished search is never run again, so its
checkpoints are never read; a final run is retrained from its config, never from a checkpoint. What is not carried,
and so starts over on the next machine: a search that had not finished (its folder is left out whole, so the same
command starts it afresh) and a final run in flight (its state, ``eval-runs/checkpoint_*``, continues it on the
machine that has it, not on a new one). Its wall time stays in the state: the record's wall seconds are
what the stage cost, work lost included. From a benchmark's storage (``hpo_efficiency``, ``default_space``: a folder
with ``units/``): its settings and every finished unit (a search's or a retrain's JSON); a unit in flight starts over.

``save --in-flight``, for a run that was stopped as asked (``long_runs`` uses it when it is stopped, not in its saves
every few minutes: tens of MB a time), carries what is in flight too: each unfinished search's experiment with the
newest checkpoint of each trial that has not ended (the same command resumes it, as ``search --resume``), and each
final run's saved state (it continues from its last epoch); from a benchmark's storage, the saved state of a unit
in flight where the benchmark keeps one (``STORAGE/checkpoint_*``: proxy_check's retrains); other units start over.

``restore`` writes into ``STORAGE/<name>`` only when that folder does not exist yet: it never mixes a carried run
into a live one. The test-split ledger of the dataset is not in the archive: a run that is carried should write its
scorings to a ledger the repository keeps (``CIFAR_TUNE_LEDGER_DIR=docs/results/test-ledger``); each experiment's
own ledger travels inside the archive, and a restore appends to the dataset's ledger (``CIFAR_TUNE_LEDGER_DIR``, or
the cache's) every scoring of it that the ledger lacks.

Refuses, in one line and before writing anything: a folder that is not a reproduction (no ``reproduce.json``), an
archive that is not one this module wrote, a restore over an existing folder.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import sys
import tarfile
from pathlib import Path

from analysis.evaluate import RUNS_DIR
from benchmarks.common import REPO
from search.reproduce import STATE_FILE as STATE
from trainables.experiment import LOCK_FILE, SPEC_FILE

CARRIED = REPO / "benchmarks" / "carried"
MANIFEST = "carry.json"
LEFT_OUT = (LOCK_FILE,)  # a lock belongs to a live process on one machine


class CarryError(Exception):
    pass


def _state(root: Path) -> dict:
    try:
        return json.loads((root / STATE).read_text())
    except FileNotFoundError:
        raise CarryError(f"{root} is not a reproduction (no {STATE} in it) nor a benchmark's storage (no units/)"
                         ) from None
    except ValueError:
        raise CarryError(f"{root / STATE} is not valid JSON (a half-written file?)") from None


def _kept(name: str) -> bool:
    """A file worth carrying: not a lock (a live process's, on one machine) nor a JSON write in flight."""
    return name not in LEFT_OUT and not (name.startswith(".") and name.endswith(".tmp"))


def _experiment_files(root: Path, exp: Path, checkpoints: frozenset = frozenset()) -> list[Path]:
    """An experiment folder's files, relative to ``root``, without locks or half-written files, without
    checkpoints but the folders named in ``checkpoints``, and without its ``report`` folder (about 5 MB of tables
    and plotly HTML that ``cifar-tune report EXP`` writes again from what is carried)."""
    from analysis.report import REPORT_DIR

    out = []
    for dirpath, dirnames, filenames in os.walk(exp):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("checkpoint_") or Path(dirpath, d) in checkpoints)
        if Path(dirpath) == exp:
            dirnames[:] = [d for d in dirnames if d != REPORT_DIR]
        out += [(Path(dirpath) / name).relative_to(root) for name in sorted(filenames) if _kept(name)]
    return out


def _final_runs_in_flight(exp: Path) -> frozenset:
    """The saved state of each final run in flight (``analysis.evaluate._in_flight_dir``)."""
    return frozenset(p for p in (exp / RUNS_DIR).glob("checkpoint_*") if p.is_dir())


def _trials_in_flight(exp: Path) -> frozenset:
    """The newest checkpoint of each trial of an unfinished search that has not ended: what its resume reads
    (``trainables.checkpoints`` falls back to an older sibling only when the newest cannot be read). An ended trial is
    never restarted, so its checkpoints stay behind."""
    from analysis.load import ExperimentError, load_trials
    from trainables.checkpoints import checkpoint_index
    from trainables.experiment import OUTCOMES_ENDED

    try:
        trials = load_trials(exp)
    except (ExperimentError, OSError, ValueError):
        return frozenset()
    newest = []
    for t in trials:
        if t["status"] in OUTCOMES_ENDED or not t.get("path"):
            continue
        saved = [p for p in Path(t["path"]).glob("checkpoint_*") if checkpoint_index(p.name) is not None]
        if saved:
            newest.append(max(saved, key=lambda p: checkpoint_index(p.name)))
    return frozenset(newest)


def finished_search(exp: Path) -> bool:
    """Every trial the experiment's spec asked for has ended (so its checkpoints will never be read again)."""
    from search.reproduce import search_done
    from search.spec import SpecError
    from search.tuner import saved_spec

    try:
        return search_done(exp, int(saved_spec(exp)["num_samples"]))
    except (SpecError, OSError, ValueError, KeyError, TypeError):
        return False


def carried_units(root: Path, in_flight: bool = False) -> tuple[list[Path], dict]:
    """A benchmark's storage (``benchmarks.hpo_efficiency``, ``benchmarks.default_space``: finished units saved as
    JSON under ``units/``): its settings, every finished unit, and every finished search experiment lying directly
    in it (default_space's search; hpo_efficiency keeps its units' searches elsewhere); a unit in flight
    (``*.segments.json``, whose search is in a Ray folder not carried) starts over, and so does an unfinished search
    unless ``in_flight`` (then it travels like a reproduction's, to be resumed)."""
    files = [p.relative_to(root) for p in sorted((root / "units").rglob("*.json"))
             if not p.name.endswith(".segments.json") and not p.name.startswith(".")]
    files += [Path(p.name) for p in sorted(root.glob("*.json")) if p.name != MANIFEST]
    started = [p for p in sorted(root.iterdir()) if (p / SPEC_FILE).is_file()]
    searches = [p for p in started if finished_search(p)]
    flying = [p for p in started if p not in searches] if in_flight else []
    # a unit's saved state, where the benchmark continues a unit from one (proxy_check's retrains)
    states = sorted(p for p in root.glob("checkpoint_*") if p.is_dir()) if in_flight else []
    for exp in searches:
        files += _experiment_files(root, exp)
    for exp in flying:
        files += _experiment_files(root, exp, _trials_in_flight(exp))
    for state in states:
        files += _experiment_files(root, state)
    manifest = {"what": "a benchmark's finished units (benchmarks/carry.py)", "name": root.name, "kind": "units",
                "saved": _dt.datetime.now().isoformat(timespec="seconds"), "from": str(root),
                "units_carried": sum(1 for f in files if f.parts[0] == "units"),
                "searches_carried": [p.name for p in searches],
                **({"in_flight": {"searches": [p.name for p in flying], "units": [p.name for p in states]}}
                   if in_flight else {})}
    return files, manifest


def carried_files(root: Path, in_flight: bool = False) -> tuple[list[Path], dict]:
    """(the files of ``root`` to carry, relative to it; the manifest saying what they hold). ``in_flight``: a
    reproduction's work in flight too, for a machine that stopped as asked (each unfinished search's experiment with
    the newest checkpoint of each trial not ended; each final run's saved state), so the next machine continues it
    instead of starting it over."""
    if (root / "units").is_dir() and not (root / STATE).exists():
        return carried_units(root, in_flight)
    state = _state(root)
    done = sorted(a for a, s in (state.get("searches") or {}).items() if s.get("done"))
    nets = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [Path(p.name) for p in root.iterdir() if p.is_file() and p.name != MANIFEST and _kept(p.name)]
    runs, flying = {}, {"searches": [], "final_runs": []}
    for arch in done:
        exp = root / arch
        if not exp.is_dir():
            raise CarryError(f"{root}: the search of {arch} is recorded finished but {exp} is missing")
        states = _final_runs_in_flight(exp) if in_flight else frozenset()
        files += _experiment_files(root, exp, states)
        runs[arch] = sorted(p.name for p in (exp / RUNS_DIR).glob("*.json"))
        flying["final_runs"] += sorted(f"{arch}/{p.name}" for p in states)
    for arch in sorted(set(nets) - set(done)) if in_flight else ():
        exp = root / arch
        if (exp / SPEC_FILE).is_file():  # started: resumed (``search --resume``) where restored
            files += _experiment_files(root, exp, _trials_in_flight(exp))
            flying["searches"].append(arch)
    manifest = {"what": "a reproduction's progress (benchmarks/carry.py): its state, and each finished search's "
                        "experiment without checkpoints or report" + (", and what was in flight" if in_flight else ""),
                "name": root.name, "kind": "reproduction", "report": state.get("report"),
                "saved": _dt.datetime.now().isoformat(timespec="seconds"),
                "from": str(root), "searches_carried": done,
                # unfinished and not carried in flight: started afresh where restored
                "searches_left_out": sorted(set(nets) - set(done) - set(flying["searches"])),
                "final_runs_carried": runs, "finished": "result" in state,
                **({"in_flight": flying} if in_flight else {})}
    return sorted(files), manifest


def save(root: str | os.PathLike, to: str | os.PathLike = CARRIED, in_flight: bool = False) -> tuple[Path, dict]:
    root = Path(root).expanduser().resolve()
    files, manifest = carried_files(root, in_flight)
    out = Path(to) / f"{root.name}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            blob = json.dumps(manifest, indent=1).encode()
            info = tarfile.TarInfo(f"{root.name}/{MANIFEST}")
            info.size, info.mtime = len(blob), int(_dt.datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(blob))
            for rel in files:
                tar.add(root / rel, arcname=f"{root.name}/{rel}", recursive=False)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out, manifest


def restore(archive: str | os.PathLike, storage: str | os.PathLike) -> tuple[Path, dict]:
    archive = Path(archive)
    try:
        tar = tarfile.open(archive, "r:gz")
    except (OSError, tarfile.TarError) as e:
        raise CarryError(f"{archive}: not a readable archive ({e})") from None
    with tar:
        members = tar.getmembers()
        names = {m.name.split("/", 1)[0] for m in members}
        manifests = [m for m in members if m.name.count("/") == 1 and m.name.endswith(f"/{MANIFEST}")]
        if len(names) != 1 or len(manifests) != 1 or any(not (m.isfile() or m.isdir()) for m in members):
            raise CarryError(f"{archive}: not an archive benchmarks.carry wrote (one folder with {MANIFEST})")
        name = names.pop()
        root = Path(storage).expanduser().resolve() / name
        if root.exists():
            raise CarryError(f"{root} exists already: restore writes only into a new folder (move it away to "
                             f"restore over it)")
        manifest = json.loads(tar.extractfile(manifests[0]).read())
        root.parent.mkdir(parents=True, exist_ok=True)
        tar.extractall(root.parent, members=members, filter="data")  # the manifest too: what was restored
    return root, manifest


def merge_ledgers(root: Path, ledger_dir: Path) -> int:
    """Append to the dataset ledgers in ``ledger_dir`` every scoring that an experiment under ``root`` recorded in
    its own ledger and they lack (a run carried here from a machine whose ledger is gone); returns how many."""
    from trainables import ledger

    held: dict[str, list[dict]] = {}  # checksum -> the dataset ledger's records, read once
    added = 0
    for exp_ledger in sorted(Path(root).rglob(ledger.EXPERIMENT_LEDGER)):
        for record in ledger.read(exp_ledger):
            checksum = record.get("checksum")
            if not checksum:
                continue
            target = Path(ledger_dir) / f"{checksum}.jsonl"
            known = held.setdefault(checksum, ledger.read(target))
            if record not in known:
                ledger.append(target, record)
                known.append(record)
                added += 1
    return added


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="a reproduction's folder -> an archive of its finished stages")
    s.add_argument("root", help="STORAGE/reproduce-reportNNN (the folder with reproduce.json)")
    s.add_argument("--to", default=str(CARRIED), help="folder for the archive (default: benchmarks/carried)")
    s.add_argument("--in-flight", action="store_true",
                   help="stopped as asked: carry the unfinished searches too (the newest checkpoint of each trial not "
                        "ended) and a reproduction's final runs' saved states, so the next machine continues them")
    r = sub.add_parser("restore", help="an archive -> STORAGE/<its folder>, which must not exist yet")
    r.add_argument("archive")
    r.add_argument("--storage", required=True, help="the --storage the reproduction runs with")
    args = p.parse_args(argv)
    try:
        if args.cmd == "save":
            out, m = save(args.root, args.to, args.in_flight)
            if m["kind"] == "units":
                flying = m.get("in_flight") or {}
                went_on = ", ".join(flying.get("searches", []) + flying.get("units", []))
                print(f"carry: saved {out}: {m['units_carried']} finished units, finished searches "
                      f"{', '.join(m['searches_carried']) or 'none'} ("
                      + (f"in flight, continued where restored: {went_on or 'nothing'})" if "in_flight" in m
                         else "what is in flight starts over)"))
                return 0
            runs = ", ".join(f"{a} {len(v)}" for a, v in m["final_runs_carried"].items()) or "none"
            flying = m.get("in_flight") or {}
            went_on = ", ".join(flying.get("searches", []) + flying.get("final_runs", []))
            print(f"carry: saved {out}: searches finished {', '.join(m['searches_carried']) or 'none'}; final runs "
                  f"saved: {runs}; left out (start afresh): {', '.join(m['searches_left_out']) or 'nothing'}"
                  + (f"; in flight (continued where restored): {went_on or 'nothing'}" if "in_flight" in m else ""))
        else:
            root, m = restore(args.archive, args.storage)
            from trainables.ledger import ledger_dir

            added = merge_ledgers(root, ledger_dir())
            if added:
                print(f"carry: {added} scorings of the test split from the archive added to {ledger_dir()}")
            if m.get("kind") == "units":
                print(f"carry: restored {root} (saved {m['saved']}): {m['units_carried']} finished units; continue "
                      f"with the same benchmark command")
                return 0
            print(f"carry: restored {root} (saved {m['saved']}): searches finished "
                  f"{', '.join(m['searches_carried']) or 'none'}; continue with the same cifar-tune reproduce command")
    except CarryError as e:
        print(f"carry: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
