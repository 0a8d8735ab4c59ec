"""README.md and docs/results.md quote the JSON records in docs/results/, and nothing else.

The result tables live between ``<!-- generated: NAME -->`` markers and are written by ``python -m
benchmarks.publish``; these tests regenerate them and compare, so a number typed or edited by hand inside a block
fails, as does a record changed without regenerating the docs. A second, independent check reads each table row back
and finds every measured number in the record the row names. The test-split uses before the ledger
(docs/results/test_uses_history.json) are checked against the records they were reconstructed from.
"""
from __future__ import annotations

import copy
import json
import re

import pytest

from analysis.stats import mean_ci, verdict
from benchmarks import publish
from tests.conftest import REPO

RESULTS = REPO / "docs" / "results"
README, RESULTS_MD = REPO / "README.md", REPO / "docs" / "results.md"


@pytest.fixture(scope="module")
def records():
    return publish.load_records(RESULTS)


@pytest.fixture(scope="module")
def generators(records):
    return publish.blocks(records)


def blocks_of(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in publish.BLOCK.finditer(text)}


# --------------------------------------------------------------------------------------------- regenerate and compare

@pytest.mark.parametrize("doc", [README, RESULTS_MD], ids=lambda p: p.name)
def test_regenerating_gives_the_committed_doc(doc, generators):
    text = doc.read_text(encoding="utf-8")
    assert {"summary", "size-targets"} <= set(blocks_of(text)), f"{doc.name} lost its generated summary blocks"
    fresh = publish.render(text, doc, generators)
    stale = [name for (name, body), new in zip(blocks_of(text).items(), blocks_of(fresh).values()) if body != new]
    assert not stale, f"{doc.name}: blocks differ from the records ({stale}); run `python -m benchmarks.publish`"


def test_every_record_with_tables_is_published(generators):
    """Each record that yields a table appears in docs/results.md (a new record needs its block there)."""
    named = set(blocks_of(RESULTS_MD.read_text(encoding="utf-8")))
    missing = [name for name in generators
               if ":" not in name and name not in {"summary", "size-targets", "test-uses"} and name not in named
               and not any(n.startswith(f"{name}:") for n in named)]
    assert not missing, f"records without a block in docs/results.md: {missing}"


def test_a_changed_record_changes_the_docs(records):
    """Change one measured number in a copy of the records: the committed README no longer matches them."""
    changed = copy.deepcopy(records)
    net = changed["report003"]["result"]["nets"][0]
    net["test_accuracy"]["mean"] = net["mean"] = net["mean"] + 0.01
    text = README.read_text(encoding="utf-8")
    assert publish.render(text, README, publish.blocks(changed)) != text


def test_the_protocol_line_says_which_unfair_records_have_no_rerun(records):
    """A record trained on more images than the report's is either superseded (its successor named beside it) or
    has no rerun, said as such: not a rerun "in progress" that nobody runs."""
    line = " ".join(publish.protocol_line(records).split())
    unfair = re.findall(r"([\w-]+)\.json", line.split(" trained on ")[0])
    assert unfair and "in progress" not in line
    kept = [n for n in unfair if not records[n].get("superseded_by")]
    assert all(f"{n}.json" in line.split(" so these are not the fair comparison")[1] for n in kept), line
    changed = copy.deepcopy(records)
    del changed["report003"]["superseded_by"]  # report003.json (50,000 images) now stands alone
    line = " ".join(publish.protocol_line(changed).split())
    assert "report003.json" in line.split("have no rerun")[0].split("fair comparison")[1], line


def test_the_committed_ledger_counts_a_use_no_record_shows_and_lists_it_as_lost(records):
    """A scoring on the committed test-split ledger that no record holds (its machine went before the record was
    written) still counts: the net's totals rise by one and the uses table lists it as lost, not as a score."""
    ledger = publish.committed_ledger(records)
    gone = [r for r in ledger if r.get("lost")]
    assert gone and all(r.get("evidence") for r in gone)  # every lost use says where it is known from
    extra = {"arch": "origin_net", "config_hash": "lost-test", "seed": None, "train_images": 40000,
             "time": "2026-12-03T00:00:00", "checksum": gone[0]["checksum"], "scores": {}, "lost": True}
    before, after = publish.Uses(records, ledger), publish.Uses(records, [*ledger, extra])
    assert after.total("origin_net") == before.total("origin_net") + 1
    table = publish.uses_block(records, after)
    row = next(line for line in table.splitlines() if line.startswith("| origin_net |") and "lost" in line)
    assert f"| {after.total('origin_net')} |" in row and "| not kept |" in row
    # a scoring on the ledger whose record is not written yet: counted and listed, its score left for the record
    running = {**extra, "config_hash": "running-test", "lost": False, "scores": {"test_accuracy": 0.5}}
    later = publish.Uses(records, [*ledger, extra, running])
    assert later.total("origin_net") == after.total("origin_net") + 1
    row = next(line for line in publish.uses_block(records, later).splitlines() if "running-test" in line)
    assert f"| {later.total('origin_net')} |" in row and "| record pending |" in row and "0.5" not in row


def test_check_mode_reports_a_hand_edit(tmp_path):
    """``--check`` on a copy of the docs with one generated number edited by hand: exit 1, the block named."""
    doc = tmp_path / "results.md"
    doc.write_text(RESULTS_MD.read_text(encoding="utf-8").replace("0.7323 ± 0.0022", "0.7423 ± 0.0022", 1),
                   encoding="utf-8")
    assert publish.main(["--check", str(doc)]) == 1
    assert publish.main(["--check", str(RESULTS_MD)]) == 0


# ------------------------------------------------------------------------------------- every number from its record

def record_numbers(record) -> set[float]:
    """Every number in a record as the tables may print it (3 or 4 decimals), and every CI's half-width."""
    out: set[float] = set()

    def walk(x):
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            out.update({round(float(x), 3), round(float(x), 4)})
        elif isinstance(x, dict):
            ci = x.get("ci95")
            if isinstance(ci, list) and len(ci) == 2 and None not in ci:
                half = (ci[1] - ci[0]) / 2
                out.update({round(half, 3), round(half, 4)})
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(record)
    return out


DECIMAL = re.compile(r"(?<![\w.])\d+\.\d{3,4}(?!\d)")
LINK = re.compile(r"\(([\w/.-]*?)([\w-]+)\.json\)")


def published_numbers(report: str) -> set[float]:
    from trainables.presets import get_preset

    return {float(v) for row in get_preset(report).published.values() for v in row.values()
            if isinstance(v, (int, float))}


@pytest.mark.parametrize("doc", [README, RESULTS_MD], ids=lambda p: p.name)
def test_every_number_in_a_generated_table_is_in_its_record(doc, records):
    """Each table row's 3- and 4-decimal numbers are found in the record it names (or its block's record)."""
    bad = []
    for name, body in blocks_of(doc.read_text(encoding="utf-8")).items():
        own = name.split(":")[0]
        for row in (line for line in body.splitlines() if line.startswith("| ") and not line.startswith("|---")):
            sources = {own} | {m[2] for m in LINK.finditer(row)}
            if name == "test-uses":
                sources.add(publish.HISTORY)
            allowed = set().union(*(record_numbers(records[s]) for s in sources if s in records))
            if "no record yet" in row:  # a net not run yet: its published number, from its report's preset
                allowed |= published_numbers("report" + row.split("|")[2].strip())
            bad += [f"{doc.name} [{name}] {v}: {row[:80]}" for v in DECIMAL.findall(row) if float(v) not in allowed]
    assert not bad, "numbers not in the row's record:\n" + "\n".join(bad)


def test_verdicts_come_from_the_interval(records, generators):
    """The CI, not the mean: 0.7307 ± 0.0084 and 0.7047 ± 0.0104 match their targets; neither is 'met'."""
    targets = generators["size-targets"](RESULTS_MD)
    for mean in ("0.7307 ± 0.0084", "0.7047 ± 0.0104", "0.7215 ± 0.0096"):
        row = next(line for line in targets.splitlines() if mean in line)
        assert "| matches |" in row, row
    assert "| met" not in targets and "**yes**" not in RESULTS_MD.read_text(encoding="utf-8")
    for name, rec in records.items():  # new-format records carry their own verdict: it must agree
        for n in (publish.reproduction(rec) or {}).get("nets", []):
            if "verdict" in n:
                assert n["verdict"] == verdict(publish.compared(n), n["published"]), name
            if n.get("published_test_accuracy") is not None:  # a validation comparison's test accuracy beside
                assert n["test_verdict"] == verdict(n["test_accuracy"], n["published_test_accuracy"]), name


# --------------------------------------------------------------------------------------------- records

def test_test_split_history_agrees_with_the_records(records):
    history = records[publish.HISTORY]
    assert history["reconstructed"] is True and all(u["reconstructed"] for u in history["uses"])
    for u in history["uses"]:
        if u["json_record"]:  # the score quoted is the record's, to the last digit
            rec = records[u["json_record"].removesuffix(".json")]
            means = {float(m) for m in _means(rec)}
            assert u["score"]["mean"] in means, u
    by_target: dict = {}
    for u in history["uses"]:
        if u["target"]:
            by_target.setdefault(u["target"]["max_params"], []).append((u["params"], round(u["score"]["mean"], 4)))
    # the audit's counts (issue 18), read back from the records
    assert by_target[17_865] == [(6_264, 0.5564), (10_566, 0.6569), (16_557, 0.7047)]
    assert by_target[35_730] == [(20_314, 0.7215), (35_730, 0.7307)]
    keras = [round(u["score"]["mean"], 4) for u in history["uses"] if u["net"] == "keras_cnn"]
    assert keras == [0.7612, 0.7946]
    counts: dict = {}
    for u in history["uses"]:
        counts[u["net"]] = counts.get(u["net"], 0) + 1
        assert u["use"] == counts[u["net"]], u
    assert history["counts"]["per_net"] == counts


def _means(record) -> list:
    if res := publish.reproduction(record):
        return [n["mean"] for n in res["nets"]]
    return [t["test"]["test_accuracy"]["mean"] for t in publish.size_targets(record)]


def test_size_records_name_their_seeds_and_supersessions(records):
    for name, rec in records.items():
        for t in publish.size_targets(rec):
            assert len(t["test"]["seeds"]) == len(t["test"]["per_seed"]) == t["test"]["test_accuracy"]["n"], name
        if rec.get("superseded_by"):
            assert rec["superseded_by"].removesuffix(".json") in records and rec.get("why"), name
    assert records["report001"]["superseded_by"] == "report001-v2.json"
    assert records["size_front"]["superseded_by"] == "size_front_hypervolume.json"


# --------------------------------------------------------------------------------------------- a future record

def test_a_new_format_record_is_picked_up(tmp_path, records):
    """A reproduce.json ``result`` object as search/reproduce.py writes it now (final runs on the report's 40,000
    images, ledger fields, verdict): it gets a summary row, its own block and its ledgered use, after the history."""
    for name, rec in records.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(rec), encoding="utf-8")
    old = copy.deepcopy(records["report000"])
    old.update(superseded_by="report000-fair.json", why="rerun under the report's training-set size")
    (tmp_path / "report000.json").write_text(json.dumps(old), encoding="utf-8")

    result = copy.deepcopy(records["report000"]["result"])
    per_seed = [0.7301, 0.7352, 0.7288, 0.7330, 0.7315]
    stat = mean_ci(per_seed)
    net = result["nets"][0]
    net.pop("beats_published")
    net.update(mean=stat["mean"], ci95=stat["ci95"], per_seed=per_seed, test_accuracy=stat, seeds=[0, 1, 2, 3, 4],
               verdict=verdict(stat, net["published"]), train_images=40_000, test_split_use=[1], test_split_uses=1,
               train_draw={"seed": 0, "from": "trainval", "images": 40_000}, search_epochs=123,
               search_epoch_budget=125, report_epochs=625)
    result.update(created="2026-12-02T10:00:00", report_train_images=40_000, report_train_images_why="§III-B")
    (tmp_path / "report000-fair.json").write_text(json.dumps(result), encoding="utf-8")

    recs = publish.load_records(tmp_path)
    gen = publish.blocks(recs)
    summary = gen["summary"](RESULTS_MD)
    row = next(line for line in summary.splitlines() if "(results/report000-fair.json)" in line)
    assert f"| {publish.fmt_ci(stat)} (5) |" in row and "| **beats** |" in row
    assert "| 40,000 (= report's) |" in row and "| 123 (125) | 625 |" in row
    assert "| 11 of 11 |" in row  # 10 simple_cnn uses before the ledger, then use 1 on the ledger
    old_row = next(line for line in summary.splitlines() if "(results/report000.json)" in line)
    assert "superseded by report000-fair.json" in old_row and "| 10 of 11 |" in old_row
    assert "report000-fair.json" not in summary.split("\n\n")[0]  # the fair record is not listed as unfair
    assert "every record here" not in summary
    assert "(results/report000-fair.json)" in gen["test-uses"](RESULTS_MD)
    block = gen["report000-fair"](RESULTS_MD)
    assert "0.7317 ±" in block and "40,000 (= report's)" in block
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- generated: report000-fair -->\n<!-- end generated: report000-fair -->\n", encoding="utf-8")
    assert publish.main(["--records", str(tmp_path), str(doc)]) == 0 and "0.7317 ±" in doc.read_text()


def test_an_unknown_block_is_refused(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- generated: nope -->\n<!-- end generated: nope -->\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="unknown generated block 'nope'"):
        publish.main([str(doc)])


def test_the_summary_has_a_row_for_every_net_of_every_reproduce_plan():
    """Issue 21: all nine nets in docs/results.md's summary; a net without a full-scale record says so."""
    from search.reproduce_plans import get_plan, list_plans

    body = blocks_of(RESULTS_MD.read_text(encoding="utf-8"))["summary"]
    rows = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| net ")]
    archs = {net.arch for report in list_plans() for net in get_plan(report).nets}
    assert len(archs) == 9
    for arch in archs:
        mine = [r for r in rows if r.startswith(f"| {arch} (")]
        assert mine, arch
        assert all("no record yet" not in r or "`cifar-tune reproduce report" in r for r in mine), mine


def test_every_link_from_the_readme_to_a_section_of_a_doc_finds_its_heading():
    """README links like docs/results.md#a-heading: the heading exists (GitHub's anchors: lower case, punctuation
    but '-' and '_' dropped, spaces as '-'); a retitled section breaks no link silently."""
    def anchor(heading: str) -> str:
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    links = re.findall(r"\]\((docs/[\w./-]+\.md)#([\w-]+)\)", README.read_text(encoding="utf-8"))
    assert links
    broken = [f"{doc}#{a}" for doc, a in links
              if a not in {anchor(line.lstrip("#")) for line in (REPO / doc).read_text(encoding="utf-8").splitlines()
                           if line.startswith("#")}]
    assert not broken, broken
