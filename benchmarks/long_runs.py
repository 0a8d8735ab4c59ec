"""The project's own long runs, in order, continued across machines that keep only the repository.

    nohup python -m benchmarks.long_runs > /tmp/runs/long_runs.log 2>&1 &     # start, or continue where it stopped
    # order: issue 21's nets first (report 001, report 004, then report 002: its proxy search, the proxy's check,
    # its final runs), then issue 22's measurements (HyperBand/PBT, the default space)
    python -m benchmarks.long_runs --list                                     # the steps and where each stands
    python -m benchmarks.long_runs --stop       # a session's end: stop it, carrying what is in flight too
    kill -TERM <its pid>                        # stop it keeping finished work (this machine keeps the rest)

Each step is one resumable command (``cifar-tune reproduce``, ``benchmarks.hpo_efficiency``,
``benchmarks.default_space``, ``benchmarks.proxy_check``): run again, it keeps what finished and continues. Around
it this runner:

* runs the code of one commit: a detached worktree at ``STORAGE/code`` put at HEAD when the runner starts (so
  editing the checkout while a run goes on changes nothing under it, and the next start runs the session's code;
  the commit is logged and in every record the step writes);
* skips a reproduction step already finished (its ``reproduce.json`` holds the record): run again it would only
  rewrite its tables and its archive;
* restores a step's storage from its carried archive (``benchmarks/carried/``, ``benchmarks.carry``) where this
  machine does not have it, and saves the archive again every ``--carry-every`` seconds and when the step ends;
* scores the test split onto the ledger the repository keeps (``CIFAR_TUNE_LEDGER_DIR=docs/results/test-ledger``);
* runs each step at ``nice 15``, so the session's own work comes first;
* on SIGTERM or SIGINT stops the step (SIGTERM, which every step handles like Ctrl-C: finished work kept, one
  line, exit 143), saves its archive and exits 143. Stopped by ``--stop`` (a session's end: the next machine has
  none of this one's storage), the archive also holds what was in flight (``carry save --in-flight``: an unfinished
  search's live trials, a final run's state, a unit's state), so the next machine continues it instead of starting
  it over; that costs tens of MB of repository a time for the larger nets, so a plain SIGTERM (a restart on the
  same machine, which keeps its storage) does not.

Publishing stays by hand (``benchmarks.record_reproduction``, ``benchmarks.publish``): a record says why it
supersedes another, which a runner cannot know. ``--commit`` commits each archive, alone, whenever it holds more
progress than the committed copy (finished searches, saved final runs, units), for machines that end without
warning; otherwise commit the archives by hand before a session ends. The committed ledger is committed by hand with
the docs ``benchmarks.publish`` regenerates from it (its use counts are published numbers); a restore puts back
into it any scoring an archive's experiments hold that it lacks.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO

DATA = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
LEDGER = REPO / "docs" / "results" / "test-ledger"


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple  # after ``python``; {data} and {storage} filled in
    roots: tuple  # the storage folders it writes, relative to --storage: what is carried
    why: str
    publish: str = ""  # what to run from the checkout once it has finished ({storage} filled in), logged then


# what to do from the checkout once a step has finished (logged then)
PUBLISH_REPRODUCTION = ("python -m benchmarks.record_reproduction {{storage}}/fair/reproduce-{report} --as "
                        "{report}-fair, a section with its markers in docs/results.md, python -m benchmarks.publish; "
                        "commit them with the ledger")
PUBLISH_UNITS = ("the same command from the checkout (it trains nothing: every unit is kept) writes the record and "
                 "its docs/benchmarks.md section there (the runner's worktree got them)")

STEPS = (
    Step("report001", ("-m", "search.cli", "reproduce", "report001", "--data-dir", "{data}", "--storage",
                       "{storage}/fair"), ("fair/reproduce-report001",),
         "issue 21: keras_cnn and resnet18 (from scratch) on the report's protocol"),
    Step("report004", ("-m", "search.cli", "reproduce", "report004", "--data-dir", "{data}", "--storage",
                       "{storage}/fair"), ("fair/reproduce-report004",), "issue 21: lozano_c, lozano_e, lozano_f",
         PUBLISH_REPRODUCTION.format(report="report004")),
    Step("report002-search", ("-m", "search.cli", "reproduce", "report002", "--searches-only", "--data-dir",
                              "{data}", "--storage", "{storage}/fair"), ("fair/reproduce-report002",),
         "issue 21: ghasemi_net's proxy search, checked (next step) before its final runs"),
    Step("report002-proxy", ("-m", "benchmarks.proxy_check", "{storage}/fair/reproduce-report002/ghasemi_net",
                             "--record", "report002-proxy", "--storage", "{storage}/proxy-report002", "--results",
                             "{storage}/proxy-report002", "--data-dir", "{data}"),
         ("proxy-report002", "fair/reproduce-report002"),
         "issue 21, build 3: does ghasemi_net's 10,000-image proxy search rank configs like all 45,000 images?",
         "cp {storage}/proxy-report002/report002-proxy.json docs/results/, a section with its markers in "
         "docs/results.md, python -m benchmarks.publish"),
    Step("report002", ("-m", "search.cli", "reproduce", "report002", "--data-dir", "{data}", "--storage",
                       "{storage}/fair"), ("fair/reproduce-report002",), "issue 21: ghasemi_net's final runs",
         PUBLISH_REPRODUCTION.format(report="report002")),
    Step("hpo-schedulers", ("-m", "benchmarks.hpo_efficiency", "--data-dir", "{data}", "--storage",
                            "{storage}/hpo-schedulers", "--methods", "tpe+asha,hyperband,pbt", "--front-archs", "",
                            "--record", "hpo_schedulers"), ("hpo-schedulers",),
         "issue 22: HyperBand and PBT against TPE + ASHA, paired by seed (the four-method record's storage is gone)",
         PUBLISH_UNITS),
    Step("default-space", ("-m", "benchmarks.default_space", "--data-dir", "{data}", "--storage",
                           "{storage}/default-space"), ("default-space",),
         "issue 22, build 3: the README search's pick against the reproduce pick", PUBLISH_UNITS))


def archive_of(root: str) -> Path:
    from benchmarks.carry import CARRIED

    return CARRIED / f"{Path(root).name}.tar.gz"


def shown(path: Path) -> str:
    """A path as the log says it: relative to the repository where it lies inside."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def log(msg: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] long_runs: {msg}", flush=True)


def frozen_code(storage: Path) -> Path:
    """``STORAGE/code``: a detached worktree of this checkout's HEAD as the runner starts. Made where missing, and
    moved to HEAD where a machine kept it from an earlier start (the code of a session's commits, not of the first
    session this machine saw); nothing moves it while the runner runs."""
    code = storage / "code"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    if not (code / "pyproject.toml").exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=True)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--force", "--detach", str(code), head],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["git", "-C", str(code), "checkout", "--quiet", "--force", "--detach", head], check=True)
    return code


PIDFILE = "long_runs.pid"  # in --storage: the runner of that storage, for --stop
IN_FLIGHT_MARK = "long_runs.stop-in-flight"  # written by --stop before its SIGTERM: carry what is in flight too
PROGRESS_KEYS = ("searches_carried", "searches_left_out", "final_runs_carried", "finished", "units_carried",
                 "in_flight")


def progress_of(manifest: dict) -> dict:
    """What a carried archive holds, without when it was saved: two saves of the same progress compare equal."""
    return {k: manifest.get(k) for k in PROGRESS_KEYS}


def committed_progress(archive: Path) -> dict | None:
    """The progress of ``archive`` as HEAD holds it (None: not committed, or unreadable)."""
    import io
    import json
    import tarfile

    from benchmarks.carry import MANIFEST

    blob = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:{archive.relative_to(REPO)}"],
                          capture_output=True)
    if blob.returncode != 0:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(blob.stdout), mode="r:gz") as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"/{MANIFEST}"))
            return progress_of(json.loads(tar.extractfile(member).read()))
    except (tarfile.TarError, StopIteration, ValueError, OSError):
        return None


def commit(archive: Path, manifest: dict, step: Step) -> None:
    """Commit ``archive`` alone (``git commit --only``: whatever else is staged stays out) when it holds more
    progress than HEAD's copy; a failure (another git command holds the index) is logged and retried at the next
    save."""
    if not archive.is_relative_to(REPO) or committed_progress(archive) == progress_of(manifest):
        return
    rel = str(archive.relative_to(REPO))
    # Only the archive: the committed test-split ledger changes the published use counts, so it is committed with
    # the docs `benchmarks.publish` regenerates from it, by hand. Its new lines travel inside the archive meanwhile
    # (each experiment's own ledger), and a restore puts any the committed ledger lacks back into it.
    runs = ", ".join(f"{a} {len(v)}" for a, v in (manifest.get("final_runs_carried") or {}).items())
    searches = ", ".join(manifest.get("searches_carried") or []) or "none"
    flying = manifest.get("in_flight") or {}
    flying = ", ".join(flying.get("searches", []) + flying.get("final_runs", []) + flying.get("units", []))
    message = (f"carry {step.name}: {rel} (searches finished: {searches}; final runs: {runs or 'none'}; units: "
               f"{manifest.get('units_carried', 0)}" + (f"; in flight: {flying}" if flying else "") + ")")
    for cmd in (["git", "-C", str(REPO), "add", "--", rel],
                ["git", "-C", str(REPO), "commit", "-q", "--only", "-m", message, "--", rel]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            log(f"{step.name}: not committed ({(done.stderr or done.stdout).strip()[:200]}); next save tries again")
            return
    log(f"{step.name}: committed {rel}")


def save(storage: Path, step: Step, commit_it: bool = False, in_flight: bool = False) -> None:
    from benchmarks.carry import CarryError, save as carry_save

    for root in step.roots:
        if (storage / root).is_dir():
            try:
                out, manifest = carry_save(storage / root, archive_of(root).parent, in_flight)
                log(f"{step.name}: carried {storage / root} -> {shown(out)}")
            except CarryError as e:
                log(f"{step.name}: not carried ({e})")
                continue
            if commit_it:
                commit(out, manifest, step)


def restore(storage: Path, step: Step) -> None:
    from benchmarks.carry import merge_ledgers, restore as carry_restore

    for root in step.roots:
        if not (storage / root).exists() and archive_of(root).exists():
            where, manifest = carry_restore(archive_of(root), (storage / root).parent)
            log(f"{step.name}: restored {where} from {shown(archive_of(root))} (saved "
                f"{manifest['saved']})")
            added = merge_ledgers(where, LEDGER)
            if added:
                log(f"{step.name}: {added} scorings of the test split from the archive added to {shown(LEDGER)} "
                    f"(run `python -m benchmarks.publish` and commit both)")


def finished(storage: Path, step: Step) -> bool:
    """A reproduction step whose every folder holds a finished ``reproduce.json`` (its record written)."""
    import json

    from search.reproduce import STATE_FILE

    states = [storage / root / STATE_FILE for root in step.roots]
    if not all(p.exists() for p in states):
        return False
    try:
        return all("result" in json.loads(p.read_text()) for p in states)
    except ValueError:
        return False


def status(storage: Path, step: Step) -> str:
    import json

    from search.reproduce import STATE_FILE

    parts = []
    for root in step.roots:
        here = storage / root
        state = here / STATE_FILE
        if state.exists():
            try:
                s = json.loads(state.read_text())
                done = ", ".join(a for a, v in s.get("searches", {}).items() if v.get("done")) or "none"
                runs = ", ".join(f"{a} {len(list((here / a / 'eval-runs').glob('*.json')))}"
                                 for a, v in s.get("searches", {}).items() if v.get("done"))
                parts.append("finished" if "result" in s else f"searches done: {done}"
                             + (f"; final runs saved: {runs}" if runs else ""))
            except ValueError:
                parts.append("state unreadable")
        elif here.exists():
            parts.append(f"{len(list(here.glob('units/**/*.json')))} units here")
        elif archive_of(root).exists():
            parts.append(f"carried ({shown(archive_of(root))}), not restored here")
        else:
            parts.append("not started")
    return "; ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", default="/tmp/runs", help="where the steps' storage lives on this machine")
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--steps", default=",".join(s.name for s in STEPS), help="which steps, in the fixed order")
    p.add_argument("--carry-every", type=float, default=600.0, help="seconds between archive saves")
    p.add_argument("--commit", action="store_true",
                   help="commit each archive (alone) when it holds more progress than the committed one, so a machine "
                        "that goes without warning loses at most --carry-every seconds of finished work")
    p.add_argument("--list", action="store_true", help="print the steps and where each stands; run nothing")
    p.add_argument("--stop", action="store_true",
                   help="stop the runner of --storage (a session's end), carrying what is in flight too, and wait "
                        "for it to exit")
    args = p.parse_args(argv)
    known = {s.name: s for s in STEPS}
    wanted = [w for w in args.steps.split(",") if w]
    for w in wanted:
        if w not in known:
            p.error(f"--steps {w}: unknown; known: {', '.join(known)}")
    if not args.carry_every > 0:
        p.error(f"--carry-every must be > 0, got {args.carry_every}")
    storage = Path(args.storage).expanduser().resolve()
    steps = [s for s in STEPS if s.name in wanted]
    if args.list:
        for s in steps:
            print(f"{s.name:16} {status(storage, s)}  ({s.why})")
        return 0
    if args.stop:
        return stop(storage)
    pid = running_pid(storage)
    if pid:
        print(f"long_runs: a runner of {storage} is running already (pid {pid}); stop it first: python -m "
              f"benchmarks.long_runs --stop --storage {storage}", file=sys.stderr)
        return 2
    storage.mkdir(parents=True, exist_ok=True)
    (storage / IN_FLIGHT_MARK).unlink(missing_ok=True)  # a stale one: only a --stop of this runner counts
    (storage / PIDFILE).write_text(str(os.getpid()))
    try:
        return run(args, storage, steps)
    finally:
        if running_pid(storage) == os.getpid():
            (storage / PIDFILE).unlink(missing_ok=True)
            (storage / IN_FLIGHT_MARK).unlink(missing_ok=True)  # used by this stop


def running_pid(storage: Path) -> int | None:
    """The pid of the live runner of ``storage`` (None: none, or a pidfile its machine's reboot left behind)."""
    try:
        pid = int((storage / PIDFILE).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"long_runs" in cmdline and _alive(pid) else None  # a pid reused by another program is no runner


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(storage: Path, wait: float = 900.0) -> int:
    """``--stop``: mark the stop as one that carries what is in flight, SIGTERM the runner, wait for it."""
    pid = running_pid(storage)
    if not pid:
        print(f"long_runs: no runner of {storage} is running (no live pid in {storage / PIDFILE})", file=sys.stderr)
        return 1
    (storage / IN_FLIGHT_MARK).write_text(str(pid))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _alive(pid):
        print(f"long_runs: the runner (pid {pid}) is still saving after {wait:.0f} s; its log says when it is done",
              file=sys.stderr)
        return 1
    print(f"long_runs: stopped the runner (pid {pid}); its archives hold what was in flight (see its log); commit "
          f"them with the ledger and docs if --commit was not given")
    return 0


def run(args, storage: Path, steps: list) -> int:
    code = frozen_code(storage)
    head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    env = {**os.environ, "PYTHONPATH": str(code), "CIFAR_TUNE_LEDGER_DIR": str(LEDGER)}
    stopping = threading.Event()
    child: list[subprocess.Popen] = []

    def on_signal(signum, _frame):
        stopping.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log(f"code {head} at {code}; storage {storage}; steps {', '.join(s.name for s in steps)}")
    for step in steps:
        if stopping.is_set():
            break
        restore(storage, step)
        if finished(storage, step):  # rerun, it would only rewrite its tables (and churn its committed archive)
            log(f"{step.name}: finished earlier; not run again")
            continue
        cmd = ["nice", "-n", "15", sys.executable,
               *(a.format(data=args.data_dir, storage=storage) for a in step.argv)]
        log(f"{step.name}: {' '.join(shlex.quote(c) for c in cmd[3:])}")
        done = threading.Event()

        def keep_carrying(step=step, done=done):
            while not done.wait(args.carry_every):
                save(storage, step, args.commit)

        saver = threading.Thread(target=keep_carrying, daemon=True)
        child[:] = [subprocess.Popen(cmd, cwd=code, env=env)]
        saver.start()
        rc = child[0].wait()
        done.set()
        saver.join()
        # stopped by --stop: what is in flight travels too (a search's live trials, a final run's state)
        save(storage, step, args.commit, in_flight=stopping.is_set() and (storage / IN_FLIGHT_MARK).exists())
        log(f"{step.name}: exit {rc}")
        if rc == 0 and step.publish:
            log(f"{step.name}: finished; to publish: {step.publish.format(storage=storage)}")
        if rc != 0:
            log("stopped: " + ("as asked; run the same command to continue" if stopping.is_set() else
                               f"{step.name} failed; its log is above, the same command retries it"))
            return 143 if stopping.is_set() else rc
    log("every step ended" if not stopping.is_set() else "stopped as asked")
    return 143 if stopping.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
