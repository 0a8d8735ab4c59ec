"""The test-split ledger (trainables.ledger) and the CI verdict (analysis.stats.verdict), without Ray: appends from
two processes at once, what counts as a use, and the verdict at its edges. The ledger written by real evaluations
is tested in test_analysis (two configs, a rerun from saved runs) and test_reproduce (kill and rerun)."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from analysis.stats import mean_ci, verdict
from trainables import ledger


def _append_many(directory: str, worker: int, n: int) -> None:
    import os

    os.environ["CIFAR_TUNE_LEDGER_DIR"] = directory
    for i in range(n):
        ledger.record_use(checksum="c" * 64, dataset="cifar10", arch=f"net{worker}", config={"lr": i / 1000},
                          seed=i, train_images=40_000, experiment=None, command=f"worker {worker}",
                          scores={"test_accuracy": 0.5, "note": "x" * 2000})  # lines longer than PIPE_BUF


def test_two_processes_appending_at_once_keep_every_record(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 150)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    lines = (tmp_path / f"{'c' * 64}.jsonl").read_text().splitlines()
    assert len(lines) == 300
    records = [json.loads(line) for line in lines]  # every line whole: none interleaved with another
    for w in (1, 2):
        mine = [r for r in records if r["arch"] == f"net{w}"]
        assert sorted(r["seed"] for r in mine) == list(range(150))


def test_a_use_is_one_config_of_one_net_and_its_seeds_are_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledgers"))
    exp = tmp_path / "exp"
    exp.mkdir()
    common = dict(checksum="d" * 64, dataset="cifar10", train_images=40_000, experiment=exp, command="test")
    for seed in (0, 1, 2):  # one config, three seeds, and a seed run on another machine's data dir
        ledger.record_use(arch="a", config={"lr": 0.1, "seed": seed, "data_dir": f"/d{seed}"}, seed=seed,
                          scores={"test_accuracy": 0.7 + seed / 100}, **common)
    ledger.record_use(arch="a", config={"lr": 0.2}, seed=0, scores={"test_accuracy": 0.6}, **common)
    ledger.record_use(arch="b", config={"lr": 0.1}, seed=0, scores={"test_accuracy": 0.5}, **common)
    records = ledger.read_dataset("d" * 64)
    assert ledger.read_experiment(exp) == records and len(records) == 5
    uses = ledger.uses(records, "a")
    assert [(u["use"], u["runs"], u["seeds"]) for u in uses] == [(1, 3, [0, 1, 2]), (2, 1, [0])]
    assert uses[0]["test_accuracy"] == pytest.approx([0.70, 0.71, 0.72])
    assert [(u["arch"], u["use"]) for u in ledger.uses(records)] == [("a", 1), ("a", 2), ("b", 1)]
    # a line cut short by a crash is skipped, not fatal
    with open(ledger.ledger_path("d" * 64), "a") as f:
        f.write('{"arch": "a", "config_ha')
    assert len(ledger.read_dataset("d" * 64)) == 5


@pytest.mark.parametrize("values,target,expected", [
    ([0.70, 0.71, 0.72], 0.6851, "beats"),  # the lower bound (0.6852) above the target
    ([0.70, 0.71, 0.72], 0.6853, "matches"),  # just inside
    ([0.70, 0.71, 0.72], 0.7347, "matches"),
    ([0.70, 0.71, 0.72], 0.7349, "misses"),  # the upper bound (0.7348) below it
    ([0.7307, 0.7294, 0.7345, 0.7281], 0.728, "matches"),  # a mean above the target, the CI across it
    ([0.71, 0.71, 0.71], 0.71, "matches"),  # no spread: the interval is the point, which equals the target
    ([0.9], 0.5, "single run"),  # one seed: no interval, no verdict
    ([], 0.5, "single run"),
])
def test_verdict_is_read_from_the_interval(values, target, expected):
    assert verdict(mean_ci(values), target) == expected


def test_verdict_for_a_metric_to_minimise():
    loss = mean_ci([0.40, 0.41, 0.42])  # CI about [0.385, 0.435]
    assert verdict(loss, 0.45, higher_is_better=False) == "beats"
    assert verdict(loss, 0.38, higher_is_better=False) == "misses"
    assert verdict(loss, 0.41, higher_is_better=False) == "matches"


# Lines a ledger may hold besides records: JSON that is not an object, an object that names no use, stray bytes
# (another encoding, a disk error), a record whose score is not a number, JSON nested past Python's recursion limit.
NOT_RECORDS = [b"[1,2]", b"null", b"{}", b'"text"', b"42", b"\xff\xfe\x00{\x00", b'{"arch": "a"}',
               b'{"arch": 3, "config_hash": "h"}', b'{"arch": "a", "config_hash": ["h"]}', b"[" * 100_000]


def _ledger_with_junk(path, good: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, junk in enumerate(NOT_RECORDS):  # the good records in order, a junk line after each and at the end
        lines += [json.dumps(good[i]).encode(), junk] if i < len(good) else [junk]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_lines_that_are_not_records_are_skipped_wherever_the_ledger_is_read(tmp_path, monkeypatch, capsys):
    """`cifar-tune ledger` and an evaluation's ledger summary read a file holding every kind of junk line: each is
    skipped like a line cut short, the records around them are counted, and a score that is not a number is left
    out of the accuracies (the use still counts)."""
    from analysis.evaluate import _ledger_summary
    from search.cli import main
    from tests.conftest import make_image_folder
    from trainables.data import load_dataset

    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledgers"))
    root = make_image_folder(tmp_path / "imgs")
    checksum = load_dataset(root, download=False).checksum
    good = [{"time": "t0", "arch": "a", "config_hash": "h1", "seed": 0, "scores": {"test_accuracy": 0.5}},
            {"time": "t1", "arch": "a", "config_hash": "h1", "seed": 1, "scores": {"test_accuracy": 0.7}},
            {"time": "t2", "arch": "a", "config_hash": "h2", "seed": 0, "scores": [0.9]},
            {"time": "t3", "arch": "b", "config_hash": "h3", "seed": 0, "scores": {"test_accuracy": "high"}}]
    _ledger_with_junk(ledger.ledger_path(checksum), good)
    assert ledger.read_dataset(checksum) == good
    uses = ledger.uses(ledger.read_dataset(checksum))
    assert [(u["arch"], u["config_hash"], u["runs"], u["test_accuracy"]) for u in uses] == [
        ("a", "h1", 2, [0.5, 0.7]), ("a", "h2", 1, []), ("b", "h3", 1, [])]

    assert ledger.read_counted(ledger.ledger_path(checksum)) == (good, len(NOT_RECORDS))  # counted, and said:
    assert main(["ledger", "--data-dir", str(root)]) == 0
    out = capsys.readouterr()
    assert "test_accuracy 0.6000" in out.out and "config h3" in out.out and not out.err, out.err
    assert f"{len(NOT_RECORDS)} lines of the ledger could not be read" in out.out  # a use may hide in one
    assert main(["ledger", "--data-dir", str(root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["records"] == good and len(shown["uses"]) == 3 and shown["unreadable_lines"] == len(NOT_RECORDS)
    summary = _ledger_summary(checksum, [("a", "h2"), ("b", "h3")])
    assert summary["nets"]["a"]["uses"] == 2 and summary["nets"]["a"]["this_evaluation"] == [2]
    assert summary["nets"]["b"]["this_evaluation"] == [1]
    # an experiment's own ledger is read the same way
    exp = tmp_path / "exp"
    _ledger_with_junk(exp / ledger.EXPERIMENT_LEDGER, good[:1])
    assert ledger.read_experiment(exp) == good[:1]


def test_a_ledger_dir_that_is_a_file_is_one_line_naming_the_variable(tmp_path, monkeypatch, capsys):
    """`CIFAR_TUNE_LEDGER_DIR=<a file> cifar-tune ledger` was a NotADirectoryError traceback."""
    from search.cli import main
    from tests.conftest import make_image_folder
    from tests.searchrun import one_line_error
    from trainables.data import DataError

    root = make_image_folder(tmp_path / "imgs")
    (tmp_path / "a-file").write_text("x")
    for value, named in ((tmp_path / "a-file", "is a file"), (tmp_path / "a-file" / "sub", "a folder on its path")):
        monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(value))
        assert main(["ledger", "--data-dir", str(root)]) == 2
        one_line_error(capsys, f"CIFAR_TUNE_LEDGER_DIR={str(value)!r}", named)
        with pytest.raises(DataError, match="CIFAR_TUNE_LEDGER_DIR"):  # before a scoring, not at its append
            ledger.check_writable()
    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "new" / "ledgers"))  # absent: made when written
    assert ledger.check_writable() == tmp_path / "new" / "ledgers"


def test_ledger_arch_is_a_net_the_registry_or_the_ledger_knows(tmp_path, monkeypatch, capsys):
    """`ledger --arch orgin_net` said "never scored on this machine for orgin_net": a typo read as an answer."""
    from search.cli import main
    from tests.conftest import make_image_folder
    from tests.searchrun import one_line_error
    from trainables.data import load_dataset

    monkeypatch.setenv("CIFAR_TUNE_LEDGER_DIR", str(tmp_path / "ledgers"))
    root = make_image_folder(tmp_path / "imgs")
    checksum = load_dataset(root, download=False).checksum
    ledger.record_use(checksum=checksum, dataset="imgs", arch="MyNet", config={"arch": "MyNet"}, seed=0,
                      train_images=None, experiment=None, command="test", scores={"test_accuracy": 0.5})
    for typo, near in (("orgin_net", "origin_net"), ("MyNett", "MyNet")):
        assert main(["ledger", "--data-dir", str(root), "--arch", typo]) == 2
        one_line_error(capsys, f"unknown arch {typo!r}", f"did you mean {near}?", "MyNet")
    assert main(["ledger", "--data-dir", str(root), "--arch", "nope"]) == 2
    one_line_error(capsys, "unknown arch 'nope'", "origin_net")
    assert main(["ledger", "--data-dir", str(root), "--arch", "MyNet", "--json"]) == 0  # a user's net, by its name
    assert [u["arch"] for u in json.loads(capsys.readouterr().out)["uses"]] == ["MyNet"]
    for known in ("origin_net", "svm_pca"):  # registry nets and the SVM baseline: known, never scored here
        assert main(["ledger", "--data-dir", str(root), "--arch", known]) == 0
        assert f"never scored on this machine for {known}" in capsys.readouterr().out
