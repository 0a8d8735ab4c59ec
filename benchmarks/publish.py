"""Docs from records: the result tables of README.md and docs/results.md, rewritten from docs/results/*.json.

    python -m benchmarks.publish            # rewrite every generated block
    python -m benchmarks.publish --check    # change nothing; exit 1 naming each block that differs from its records

A block is the text between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``; what lies outside
the markers is prose and is left alone. NAME is one of the summaries (``summary``: one row per net with a full-scale
result; ``size-targets``: the size-aware targets; ``test-uses``: every scoring of the test split) or the stem of one
record (``report003`` -> docs/results/report003.json), which gets its own tables; a size-aware comparison's tables
also come one at a time (``size_front:searches``, ``:front``, ``:targets``) so prose can sit between them.

Every number comes from a record. Verdicts are ``analysis.stats.verdict`` on the record's 95% CI (never the mean
alone); the reports' final training-set sizes are ``trainables.presets``' ``train_images``; a reproduction's "report's
tuning epochs" are the record's, with today's re-derived figure (``search.reproduce.get_plan``) beside it where the
two differ; parameter counts are built from the record's config (on the meta device: no memory, no compute).
Test-split uses: docs/results/test_uses_history.json (every use before the ledger, reconstructed) plus what a
new-format record's ledger fields say (``test_split_use``: this config's use number on the ledger; ``test_split_uses``:
the net's uses on it so far). A record is either a reproduction (``reproduce.json``, whole or its ``result`` object,
as ``search/reproduce.py`` writes it), a size-aware comparison (``benchmarks/size_front.py``), a follow-up
search + evaluation (``what``, ``search``, ``evaluation``, ``target``) or learning curves (``runs``). A record with
``superseded_by`` stays in the tables, marked.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from pathlib import Path

from benchmarks.common import REPO

RESULTS = REPO / "docs" / "results"
DOCS = (REPO / "README.md", REPO / "docs" / "results.md")
HISTORY = "test_uses_history"
LEDGER = RESULTS / "test-ledger"  # the committed test-split ledger (trainables/ledger.py's format)
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w.:-]+) -->\n)(?P<body>.*?)(<!-- end generated: (?P=name) -->)", re.S)
JPEG = ("Offline JPEG-q75 copy of CIFAR-10: about 1–2 points below the official files; not subtracted from ours "
        "(ours would be expected to rise).")
VERDICTS = ("Verdicts from the 95% CI (`analysis.stats.verdict`): *beats* = its lower bound above the published "
            "number, *matches* = the CI contains it, *misses* = its upper bound below it; one seed: *single run*.")
SAMPLER = {"tpe": "MO-TPE", "tpe-plain": "MO-TPE (Optuna's, stopped trials ranked equal)", "random": "random",
           "nsga2": "NSGA-II"}
METRIC = {"test_accuracy": "test accuracy", "weighted_f1": "weighted F1",
          "val_accuracy": "validation accuracy (the report's 10,000-image split)"}
SIZE_REPORT = "report003"  # the size-aware targets are report 003's ModifiedNet's (benchmarks/size_front.py)


# --------------------------------------------------------------------------------------------- reading records

def load_records(folder: Path = RESULTS) -> dict[str, dict]:
    """stem -> parsed JSON, for every docs/results/*.json."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob("*.json"))}


def reproduction(record: dict) -> dict | None:
    """The ``result`` object of a reproduction record (the whole reproduce.json, or the object itself); else None."""
    result = record.get("result", record)
    return result if isinstance(result, dict) and "nets" in result and "report" in result else None


def size_targets(record: dict) -> list[dict]:
    """A size record's tested targets, each as {max_params, target, member, test}: comparison or follow-up."""
    if "targets" in record.get("summary", {}):
        return [t for t in record["summary"]["targets"] if t.get("member") and t.get("test")]
    if "target" in record and "evaluation" in record:
        result = record["evaluation"]["results"][0]
        trial = next(t for t in record["search"]["trials"] if t["trial_id"] == result["trial_id"])
        test = {"test_accuracy": result["test_accuracy"], "weighted_f1": result["weighted_f1"],
                "per_seed": result["test_accuracy"]["values"], "seeds": result["seeds"],
                "train_images": result.get("train_images"), "test_split": record["evaluation"].get("test_split")}
        return [{**record["target"], "member": {**trial, "arch": result["arch"]}, "test": test}]
    return []


def final_images(record: dict, stated: int | None) -> int:
    """How many images the final runs trained on: as stated, else all of train + validation (records before the
    fair protocol trained on ``trainval``, 50,000 images, and did not say the number)."""
    data = (reproduction(record) or {}).get("data") or {}
    return int(stated or data.get("train_val") or 50_000)


def params_of(config: dict) -> int:
    """The net's trainable parameters, built from the record's config (registry defaults for unset keys)."""
    import torch

    from trainables.config import ARCH_KWARGS, resolve_config
    from trainables.models import create_model
    from trainables.models.registry import count_params

    cfg = resolve_config({k: v for k, v in config.items() if k not in ("data_dir", "seed")})
    with torch.device("meta"):
        model = create_model(cfg["arch"], dropout=cfg["dropout"], norm=cfg["norm"],
                             **{k: cfg[k] for k in ARCH_KWARGS if cfg[k] is not None})
    return count_params(model)


def report_images(report: str) -> int:
    from trainables.presets import get_preset

    return int(get_preset(report).train_images)


def rederived_epochs(report: str, arch: str) -> int | None:
    from search.reproduce import get_plan

    return next((n.report_epochs for n in get_plan(report).nets if n.arch == arch), None)


class Uses:
    """Test-split uses per net: the reconstructed history, then the ledger's counts (per size target: the rows of
    ``size_summary``)."""

    def __init__(self, records: dict, ledger_records: list[dict] = ()):
        from trainables import ledger

        self.history = records.get(HISTORY, {}).get("uses", [])
        self.before: dict[str, int] = {}
        for u in self.history:
            self.before[u["net"]] = self.before.get(u["net"], 0) + 1
        self.ledgered: dict[str, int] = {}  # net -> uses on the ledger, the most any record (or the ledger) has seen
        for name, rec in records.items():
            for net in (reproduction(rec) or {}).get("nets", []):
                self._ledger(net["arch"], net.get("test_split_uses"))
            for t in size_targets(rec):
                self._ledger(t["member"]["arch"], (t["test"].get("test_split") or {}).get("uses"))
        covered = {(net["arch"], k) for rec in records.values() for net in (reproduction(rec) or {}).get("nets", [])
                   for k in net.get("test_split_use") or []}  # (net, ledger use) a record publishes
        self.lost = []  # uses the committed ledger holds that no record can show: (net, its use on the ledger, entry)
        self.pending = []  # uses on the committed ledger whose record is not written yet (a run in progress)
        lost = {(r.get("arch"), r.get("config_hash")): r for r in ledger_records if r.get("lost")}
        for arch in sorted({r.get("arch") for r in ledger_records}):
            mine = ledger.uses(ledger_records, arch)
            self._ledger(arch, len(mine))
            for u in mine:
                if (arch, u["config_hash"]) in lost:
                    self.lost.append((arch, u["use"], lost[(arch, u["config_hash"])]))
                elif (arch, u["use"]) not in covered:
                    self.pending.append((arch, u["use"], u))

    def _ledger(self, arch: str, count) -> None:
        if count:
            self.ledgered[arch] = max(self.ledgered.get(arch, 0), int(count))

    def total(self, arch: str) -> int:
        return self.before.get(arch, 0) + self.ledgered.get(arch, 0)

    def of(self, record: str, arch: str, params: int | None = None, ledger: list | None = None) -> int | None:
        """This use's number for ``arch``: from the history, or (new records) its ledger number after the history."""
        for u in self.history:
            if u.get("json_record") == f"{record}.json" and u["net"] == arch and params in (None, u.get("params")):
                return u["use"]
        return self.before.get(arch, 0) + max(ledger) if ledger else None

    def cell(self, record: str, arch: str, params: int | None = None, ledger: list | None = None) -> str:
        use = self.of(record, arch, params, ledger)
        return f"{use or '?'} of {self.total(arch)}"


# --------------------------------------------------------------------------------------------- formatting

def fmt_ci(stat: dict) -> str:
    from analysis.tables import fmt_ci as fmt

    return fmt(stat)


def seeds4(values) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def images(ours: int, report: int) -> str:
    return f"{ours:,} (report: {report:,})" if ours != report else f"{ours:,} (= report's)"


def record_link(name: str, rec: dict, prefix: str) -> str:
    superseded = f", superseded by {rec['superseded_by']}" if rec.get("superseded_by") else ""
    return f"[{name}.json]({prefix}{name}.json){superseded}"


def tuning_epochs(report: str, net: dict) -> str:
    """What the record says the report spent tuning this net, and today's re-derived figure where it differs."""
    again = rederived_epochs(report, net["arch"])
    return f"{net['report_epochs']:,}" + (f" (re-derived since: {again:,})" if again and again != net["report_epochs"]
                                          else "")


def para(text: str) -> str:
    """Prose wrapped as the docs wrap theirs (tables stay one row a line)."""
    return textwrap.fill(text, 117, break_long_words=False, break_on_hyphens=False)


def table(header: list[str], rows: list[list], align: str = "") -> str:
    """A markdown table; ``align`` is the separator row's cells ("---|---:") or one letter per column ("lr")."""
    if align and set(align) <= set("lrc") and len(align) == len(header):
        align = "|".join({"l": "---", "r": "---:", "c": ":---:"}[c] for c in align)
    align = align or "|".join("---" for _ in header)
    return "\n".join(["| " + " | ".join(header) + " |", f"|{align}|"] + ["| " + " | ".join(map(str, r)) + " |"
                                                                         for r in rows])


def protocol_line(records: dict) -> str:
    """Which records' final runs trained on more images than the report's final model (not the fair protocol)."""
    runs = [(name, final_images(rec, n.get("train_images")), report_images(res["report"]))
            for name, rec in records.items() if (res := reproduction(rec)) for n in res["nets"]]
    runs += [(name, final_images(rec, t["test"].get("train_images")), report_images(SIZE_REPORT))
             for name, rec in records.items() for t in size_targets(rec)]
    loose = [r for r in runs if r[1] != r[2]]
    if not loose:
        return "Every final run trained on as many images as the report's final model (the fair protocol)."
    names = sorted({r[0] for r in loose})
    which = "every record here" if len(names) == len({r[0] for r in runs}) else ", ".join(f"{n}.json" for n in names)
    ours, theirs = (" / ".join(f"{v:,}" for v in sorted({r[i] for r in loose})) for i in (1, 2))
    kept = [f"{n}.json" for n in names if not records[n].get("superseded_by")]  # no later record replaces these
    return (f"**Not the reports' protocol:** the final runs of {which} trained on {ours} images where the reports' "
            f"final models trained on {theirs}, so these are not the fair comparison"
            + (f"; {_listed(kept)} {'has' if len(kept) == 1 else 'have'} no rerun at the report's training-set size"
               if kept else "")
            + ("; the others are superseded by later records (named beside them)." if len(kept) < len(names)
               else "."))


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# --------------------------------------------------------------------------------------------- the blocks

def summary(records: dict, uses: Uses, prefix: str = "docs/results/") -> str:
    rows = []
    found = sorted((res["created"], name, rec, res) for name, rec in records.items() if (res := reproduction(rec)))
    for _, name, rec, res in found:  # in the order they were made
        for n in res["nets"]:
            stat = compared(n)
            rows.append([f"{n['arch']} ({params_of(n['config']):,} params)", res["report"].removeprefix("report"),
                         METRIC[n["metric"]], f"{fmt_ci(stat)} ({stat['n']})", f"{n['published']}",
                         _verdict(stat, n["published"]),
                         images(final_images(rec, n.get("train_images")), report_images(res["report"])),
                         uses.cell(name, n["arch"], ledger=n.get("test_split_use")),
                         f"{n['search_epochs']:,} ({n['search_epoch_budget']:,})", tuning_epochs(res["report"], n),
                         record_link(name, rec, prefix)])
    rows += _not_run_rows({n["arch"] for *_, res in found for n in res["nets"]}, uses)
    head = ["net", "report", "metric", "ours: mean ± 95% CI (seeds)", "published", "verdict (95% CI)",
            "final runs trained on (images)", "test-split use of this net", "search epochs (budget)",
            "report's tuning epochs", "record"]
    return "\n".join([para(JPEG + " " + VERDICTS + " " + protocol_line(records)), "",
                      table(head, rows, "---|---|---|---:|---:|---|---:|---:|---:|---:|---"), "",
                      para(_uses_note())])


def _not_run_rows(done: set, uses: Uses) -> list[list]:
    """A row for every net of a ``cifar-tune reproduce`` plan that has no full-scale record yet: what it will be
    compared with, its budget, and the command that runs it (issue 21: a row for each of the nine nets)."""
    from search.reproduce_plans import get_plan, list_plans

    rows = []
    for report in list_plans():
        plan = get_plan(report)
        for net in plan.nets:
            if net.arch in done:
                continue
            rows.append([f"{net.arch} ({params_of({'arch': net.arch}):,} params)", report.removeprefix("report"),
                         METRIC[net.metric], "no record yet" + (f" ({net.ours_note})" if net.ours_note else ""),
                         f"{net.published}", "—", f"{plan.train_images:,} planned (= report's)",
                         f"{uses.total(net.arch)} so far", f"— ({net.epoch_budget:,})", f"{net.report_epochs:,}",
                         f"`cifar-tune reproduce {report}` (running or queued)"])
    return rows


def _uses_note() -> str:
    return ("Test-split use *k of n*: the k-th config of this net scored on this test split, of n so far, small-scale "
            "evaluations included (before the ledger: docs/results/test_uses_history.json, reconstructed from the "
            "records; since: the ledger's counts in the record).")


def compared(n: dict) -> dict:
    """A reproduced net's compared metric as ``{mean, ci95, n}``: the net's own mean and CI, whatever the metric (a
    test-split metric is also stored under its name; a validation one, report 004's, only there)."""
    return {"mean": n["mean"], "ci95": n["ci95"], "n": len(n["per_seed"])}


def _verdict(stat: dict, target: float) -> str:
    from analysis.stats import verdict

    v = verdict(stat, target)
    return f"**{v}**" if v == "beats" else v


def _member(m: dict) -> str:
    c = m.get("config", {})
    return f"{m['params']:,} params (width {c.get('width')}, kernel {c.get('kernel')}, {c.get('pool')} pool)"


def _target_rows(records: dict, uses: Uses, prefix: str) -> list[list]:
    rows, seen = [], {}
    for name, rec in sorted(records.items(), key=lambda kv: kv[1].get("written", "")):
        for t in size_targets(rec):
            m, test = t["member"], t["test"]
            seen[t["max_params"]] = seen.get(t["max_params"], 0) + 1
            ledger = (test.get("test_split") or {}).get("this_evaluation")
            rows.append([t, m, test, name, rec, seen[t["max_params"]],
                         uses.cell(name, m["arch"], m["params"], ledger)])
    out = []
    for t, m, test, name, rec, k, net_use in rows:
        n_target = sum(1 for r in rows if r[0]["max_params"] == t["max_params"])
        acc = test["test_accuracy"]
        out.append([f"≤ {t['max_params']:,} params, ≥ {t['target_test_accuracy']}", _member(m),
                    f"{fmt_ci(acc)} ({acc['n']}; {seeds4(test['per_seed'])})",
                    _verdict(acc, t["target_test_accuracy"]),
                    images(final_images(rec, test.get("train_images")), report_images(SIZE_REPORT)),
                    f"{k} of {n_target} ({m['arch']}: {net_use})", record_link(name, rec, prefix)])
    return out


def size_summary(records: dict, uses: Uses, prefix: str = "docs/results/") -> str:
    head = ["target (from report 003's ModifiedNet)", "member",
            "ours: test accuracy, mean ± 95% CI (seeds; per seed)", "verdict (95% CI)",
            "final runs trained on (images)", "test-split use: this target (the net)", "record"]
    return "\n".join([table(head, _target_rows(records, uses, prefix), "---|---|---:|---|---:|---:|---"), "",
                      para("A target is met only where the verdict is *beats*; *matches* means the CI contains the "
                           "target.")])


def _bold_if_beats(text: str, stat: dict, target: float) -> str:
    """Bold is kept for a win the CI shows; a tie or a miss is printed plain."""
    from analysis.stats import verdict

    return f"**{text}**" if verdict(stat, target) == "beats" else text


def reproduction_block(name: str, rec: dict, uses: Uses) -> str:
    res = reproduction(rec)
    rows = []
    for n in res["nets"]:
        # beside the compared number: test accuracy, or for a test-accuracy comparison its weighted F1
        stat, other = compared(n), "weighted_f1" if n["metric"] == "test_accuracy" else "test_accuracy"
        beside = f"{METRIC[other]} {fmt_ci(n[other])}"
        if other == "test_accuracy" and n.get("published_test_accuracy") is not None:  # the report gave one too
            beside += (f" (report: {n['published_test_accuracy']:.4f}, "
                       f"{_verdict(n['test_accuracy'], n['published_test_accuracy'])})")
        rows.append([f"{n['arch']} ({params_of(n['config']):,} params)", METRIC[n["metric"]],
                     f"{_bold_if_beats(fmt_ci(stat), stat, n['published'])} ({seeds4(n['per_seed'])}); {beside}",
                     f"{n['published']}: {n['published_note']}",
                     _verdict(stat, n["published"]),
                     images(final_images(rec, n.get("train_images")), report_images(res["report"])),
                     uses.cell(name, n["arch"], ledger=n.get("test_split_use")),
                     f"{n['search_epochs']:,} ({n['search_epoch_budget']:,})",
                     f"{n['final_epochs']:,} ({n['repeats']} × {n['final_epochs_per_run']})",
                     tuning_epochs(res["report"], n),
                     f"{n['wall_seconds']['search'] / 60:.0f} + {n['wall_seconds']['evaluate'] / 60:.0f} min"])
    head = ["net", "metric", "ours: mean ± 95% CI (per seed)", "published", "verdict (95% CI)",
            "final runs trained on (images)", "test-split use of this net", "search epochs (budget)", "final epochs",
            "report's tuning epochs", "wall: search + final runs"]
    lines = [para(f"Record: [results/{name}.json](results/{name}.json). {JPEG}"), "",
             table(head, rows, "---|---|---:|---|---|---:|---:|---:|---:|---:|---:")]
    rungs = [[n["arch"], f"{r['from_epoch']} → {r['to_epoch']}", r["trials"], f"{r['kendall_tau']:+.3f}",
              {True: "yes", False: "no"}[r["best_later_was_kept"]]]
             for n in res["nets"] for r in n.get("rung_agreement", []) if r["kendall_tau"] is not None]
    if rungs:
        lines += ["", para("Does ASHA keep what wins later? Kendall τ of validation accuracy between consecutive "
                           "rungs, among the trials that reached both (pairs with fewer than 2 such trials left out):"),
                  "",
                  table(["net", "rung → next", "trials at both", "Kendall τ",
                         "best at the next rung was in the kept top 1/η at this one"], rungs, "---|---|---:|---:|---")]
    if rec.get("superseded_by"):
        lines += ["", para(f"Superseded by [{rec['superseded_by']}](results/{rec['superseded_by']}): {rec['why']}")]
    return "\n".join(lines)


def size_block(name: str, rec: dict, uses: Uses, part: str = "") -> str:
    """A size-aware comparison: ``searches`` (per search, then per sampler, then paired by seed), ``front`` (the
    joint front), ``targets`` (the tested members); no part: all three."""
    parts = {"searches": _searches, "front": _front, "targets": _targets_table}
    chosen = [parts[part]] if part else list(parts.values())
    lines = [] if part else [para(f"Record: [results/{name}.json](results/{name}.json). {JPEG}"), ""]
    lines += ["\n\n".join(fn(name, rec, uses) for fn in chosen)]
    if part == "targets":  # a comparison with a published number: the caveat goes beside it
        lines = [para(JPEG), ""] + lines
    if rec.get("superseded_by") and part in ("", "targets"):
        lines += ["", para(f"Superseded by [{rec['superseded_by']}](results/{rec['superseded_by']}): {rec['why']}")]
    return "\n".join(lines)


def _searches(name: str, rec: dict, uses: Uses) -> str:
    from analysis.stats import mean_ci

    s, settings = rec["summary"], rec["settings"]
    ref = s["reference"]
    rows = [[SAMPLER.get(r["sampler"], r["sampler"]), r["seed"], r["completed"], r["front"], f"{r['normalised']:.4f}",
             f"{r['at_first_rung']['trials']} at epoch {r['at_first_rung']['epoch']}, "
             f"{r['at_first_rung']['normalised']:.4f}", f"{r['epochs']} ({settings['epoch_budget']})",
             f"{r['wall_seconds'] / 60:.0f} min"] for r in s["searches"]]
    lines = [table(["sampler", "seed", "completed", "front", "hypervolume (normalised)",
                    "at the first rung: trials, hypervolume", "epochs (budget)", "wall"], rows,
                   "---|---:|---:|---:|---:|---:|---:|---:"), "",
             para(f"Reference point common to the searches: accuracy {ref[0]:g}, {ref[1]:,.0f} parameters (the "
                  f"largest completed net + 10%); hypervolume normalised by the box from (accuracy 1, 0 parameters) "
                  f"to it."), ""]
    samplers = s["samplers"]
    lines.append(table(["sampler", f"final hypervolume: mean ± 95% CI ({settings['seeds']} seeds)",
                        "at the first rung, all trials"],
                       [[SAMPLER.get(k, k), fmt_ci(v["normalised"]), fmt_ci(v["at_first_rung"])]
                        for k, v in samplers.items()], "---|---:|---:"))
    if {"tpe", "random"} <= set(samplers):
        diff = {key: [a - b for a, b in zip(samplers["tpe"][key]["values"], samplers["random"][key]["values"])]
                for key in ("normalised", "at_first_rung")}
        final, first = (", ".join(f"{d:+.4f}" for d in diff[k]) for k in ("normalised", "at_first_rung"))
        lines += ["", para(f"Paired by seed, MO-TPE − random: final hypervolume {final} (mean "
                           f"{_signed_ci(mean_ci(diff['normalised']))}); at the first rung {first} (mean "
                           f"{_signed_ci(mean_ci(diff['at_first_rung']))}).")]
    return "\n".join(lines)


def _front(name: str, rec: dict, uses: Uses) -> str:
    s, settings = rec["summary"], rec["settings"]
    front: dict = {}
    for m in s["front"]:  # a start-up draw both samplers share appears once per sampler: one row, both named
        key = (m["params"], m["val_accuracy"], m["config"].get("lr"))
        front.setdefault(key, {"m": m, "by": []})["by"].append(f"{SAMPLER.get(m['sampler'], m['sampler'])} "
                                                                f"seed {m['seed']}")
    rows = [[f"{f['m']['params']:,}", f"{f['m']['size_mb']:.3f}", f"{f['m']['val_accuracy']:.4f}",
             f['m']['config'].get("width"), f['m']['config'].get("kernel"), f['m']['config'].get("pool"),
             f"{f['m']['config']['lr']:.2g}", f['m']['config']['batch_size'], ", ".join(f["by"])]
            for f in sorted(front.values(), key=lambda f: f["m"]["params"])]
    return "\n".join([f"The joint front (completed trials of the {len(s['searches'])} searches):", "",
                      table(["params", "MB", f"val accuracy ({settings['max_epochs']} epochs)", "width", "kernel",
                             "pool", "lr", "batch", "found by"], rows, "---:|---:|---:|---:|---:|---|---:|---:|---")])


def _signed_ci(stat: dict) -> str:
    half = (stat["ci95"][1] - stat["ci95"][0]) / 2 if stat.get("ci95") else None
    return f"{stat['mean']:+.4f}" + (f" ± {half:.4f}, 95% CI" if half is not None else "")


def _targets_table(name: str, rec: dict, uses: Uses) -> str:
    rows = []
    for t in size_targets(rec):
        m, test = t["member"], t["test"]
        acc = test["test_accuracy"]
        ledger = (test.get("test_split") or {}).get("this_evaluation")
        rows.append([f"≤ {t['max_params']:,} params, ≥ {t['target_test_accuracy']}", _member(m),
                     f"{_bold_if_beats(fmt_ci(acc), acc, t['target_test_accuracy'])} ({seeds4(test['per_seed'])}; "
                     f"seeds {', '.join(map(str, test['seeds']))})",
                     f"{test['weighted_f1']['mean']:.4f}", _verdict(acc, t["target_test_accuracy"]),
                     images(final_images(rec, test.get("train_images")), report_images(SIZE_REPORT)),
                     uses.cell(name, m["arch"], m["params"], ledger)])
    return table(["target", "member", "test accuracy: mean ± 95% CI (per seed)", "weighted F1", "verdict (95% CI)",
                  "final runs trained on (images)", "test-split use of the net"], rows,
                 "---|---|---:|---:|---|---:|---:")


def followup_block(name: str, rec: dict, uses: Uses) -> str:
    search = rec["search"]
    pick = size_targets(rec)[0]["member"]
    return "\n".join([para(f"Record: [results/{name}.json](results/{name}.json). {JPEG}"), "",
                      _targets_table(name, rec, uses), "",
                      para(f"The search spent {search['epochs']} epochs (budget {search['spec']['epoch_budget']}); its "
                           f"pick had validation accuracy {pick['val_accuracy']:.4f} at epoch {pick['epochs']}.")])


def curves_block(name: str, rec: dict, uses: Uses) -> str:
    at = (5, 10, 20, 30, 40, 50)
    rows = []
    for key, run in rec["runs"].items():
        by_epoch = {c["epoch"]: c for c in run["curve"]}
        last = by_epoch[max(by_epoch)]
        rows.append([f"{key}: {run['what']}"] + [f"{by_epoch[e]['val_accuracy']:.3f}" if e in by_epoch else "—"
                                                  for e in at] + [f"{last['train_accuracy']:.3f}"])
    added = "".join(f" Run {key}: code {run['code']}, {run['machine']} (its command is in the record)."
                    for key, run in rec["runs"].items() if "command" in run)  # added by benchmarks.curves
    return "\n".join([para(f"Record: [results/{name}.json](results/{name}.json) (validation split only; "
                           f"{rec['date']}, code {rec['code']}).{added}"), "",
                      table(["run"] + [f"val acc @{e}" for e in at] + ["train acc, last epoch (dropout on)"], rows,
                            "---" + "|---:" * (len(at) + 1))])


def proxy_block(name: str, rec: dict, uses: Uses) -> str:
    """benchmarks.proxy_check's record: each retrained trial on the proxy and on the full data, and the agreement."""
    s, e = rec["proxy_check"], rec["epochs"]
    rows = [[u["trial_id"], _abridged(u["config"]) + _augmented(u["config"]),
             f"{u['proxy_val']:.4f} ({u['proxy_rank']})",
             f"{u['full_val']:.4f} ({u['full_rank']})"] for u in rec["units"]]
    full = "all the training images" if rec["full_images"] == "all" else f"the first {rec['full_images']:,}"
    tau = "—" if s["kendall_tau"] is None else f"{s['kendall_tau']:+.3f} (p {s['p_value']})"
    return "\n".join([para(f"Record: [results/{name}.json](results/{name}.json) (validation split only; "
                            f"{rec['written'][:10]}, code {rec['code']}, {rec['machine']}). {rec['arch']}: "
                            f"{len(rec['units'])} of the {rec['trials_reached']} trials that reached epoch {e} of "
                            f"the proxy search (its first {rec['proxy_images']:,} training images), spread over its "
                            f"ranking, trained again on {full} and compared at epoch {e}."), "",
                       table(["trial", "config (abridged)", f"proxy: val acc @{e} (rank)",
                              f"full data: val acc @{e} (rank)"], rows, "---|---|---:|---:"), "",
                       para(f"Kendall tau {tau} over {len(rec['units'])} configs; the proxy's best "
                            f"{'is' if s['same_best'] else 'is not'} the full data's best; of the proxy's top "
                            f"{s['top_third']}, {s['top_third_shared']} {'is' if s['top_third_shared'] == 1 else 'are'}"
                            f" in the full data's top {s['top_third']}.")])


def _augmented(config: dict) -> str:
    """', augmented' / ', no augmentation' where a trial's config says (the proxy's bias is by augmentation)."""
    if "augment" not in config:
        return ""
    return ", no augmentation" if config["augment"] in (False, "false", "none") else ", augmented"


def uses_block(records: dict, uses: Uses) -> str:
    rows = []
    for u in uses.history:
        target = f"≤ {u['target']['max_params']:,} params" if u.get("target") else ""
        score = u["score"]
        rows.append([u["net"], u["use"], target, f"{u['params']:,}" if u.get("params") else "—",
                     _abridged(u["config"]), f"{u['train_images']:,}", u["date"], METRIC[u["metric"]],
                     f"{score['mean']:.4f}", f"[{u['record'].split('/')[-1].split('#')[0]}]({_rel(u['record'])})"])
    for name, rec in records.items():  # after the ledger: what new records say
        for n in (reproduction(rec) or {}).get("nets", []):
            if n.get("test_split_use"):
                rows.append([n["arch"], uses.of(name, n["arch"], ledger=n["test_split_use"]), "",
                             f"{params_of(n['config']):,}", _abridged(n["config"]),
                             f"{final_images(rec, n.get('train_images')):,}", rec.get("created", "")[:10]
                             or reproduction(rec).get("created", "")[:10], METRIC[n["metric"]],
                             f"{n['mean']:.4f}", f"[{name}.json](results/{name}.json)"])
    for arch, use, entry in uses.lost:  # on the ledger, in no record: counted, never published
        rows.append([arch, uses.before.get(arch, 0) + use, "", "—", "lost: see the ledger entry's evidence",
                     f"{entry['train_images']:,}" if entry.get("train_images") else "—", entry.get("time", "")[:10],
                     "—", "not kept", f"[test-ledger](results/test-ledger/{entry['checksum']}.jsonl)"])
    for arch, use, u in uses.pending:  # scored, its record not written yet: counted now, its score published then
        rows.append([arch, uses.before.get(arch, 0) + use, "", "—", f"config {u['config_hash']} ({u['runs']} runs)",
                     f"{u['train_images']:,}" if u.get("train_images") else "—", (u.get("first") or "")[:10], "—",
                     "record pending", "[test-ledger](results/test-ledger/)"])
    counts = ", ".join(f"{net} {uses.total(net)}" for net in sorted(set(uses.before) | set(uses.ledgered)))
    return "\n".join([para(f"Uses so far, per net: {counts}. Before the ledger (reconstructed, lower bounds: a "
                           f"scoring that left no trace cannot be counted): "
                           f"[results/{HISTORY}.json](results/{HISTORY}.json)."), "",
                      table(["net", "use", "target", "params", "config (abridged)", "trained on (images)", "date",
                             "metric", "score (mean)", "record"], rows, "---|---:|---|---:|---|---:|---|---|---:|---")])


def _abridged(config) -> str:
    if isinstance(config, str):
        return config.split(" (abridged")[0]
    parts = [config.get("optimizer", ""), f"lr {config['lr']:.2g}" if "lr" in config else "",
             f"batch {config['batch_size']}" if "batch_size" in config else "",
             f"dropout {config['dropout']:.2g}" if "dropout" in config else ""]
    return ", ".join(p for p in parts if p)


def _rel(path: str) -> str:
    """A repo path as a link from docs/results.md."""
    return path.removeprefix("docs/")


# --------------------------------------------------------------------------------------------- rewriting

def committed_ledger(records: dict, folder: Path = LEDGER) -> list[dict]:
    """The test-split ledger the repository keeps for the dataset of the history (real runs write to it with
    ``CIFAR_TUNE_LEDGER_DIR=docs/results/test-ledger``; its first lines reconstruct the ledger-era uses of machines
    that are gone); [] where there is none."""
    from trainables import ledger

    checksum = (records.get(HISTORY, {}).get("dataset") or {}).get("checksum")
    return ledger.read(Path(folder) / f"{checksum}.jsonl") if checksum else []


def blocks(records: dict, ledger_records: list[dict] | None = None) -> dict[str, callable]:
    """Every generated block's writer; ``ledger_records``: the committed ledger's (default: read from the repo)."""
    uses = Uses(records, committed_ledger(records) if ledger_records is None else ledger_records)
    out = {"summary": lambda doc: summary(records, uses, "docs/results/" if doc.name == "README.md" else "results/"),
           "size-targets": lambda doc: size_summary(records, uses,
                                                    "docs/results/" if doc.name == "README.md" else "results/"),
           "test-uses": lambda doc: uses_block(records, uses)}
    for name, rec in records.items():
        kind = (reproduction_block if reproduction(rec) else size_block if "targets" in rec.get("summary", {})
                else followup_block if "evaluation" in rec else curves_block if "runs" in rec
                else proxy_block if "proxy_check" in rec else None)
        if kind:
            out[name] = lambda doc, name=name, rec=rec, kind=kind: kind(name, rec, uses)
        if kind is size_block:
            for part in ("searches", "front", "targets"):
                out[f"{name}:{part}"] = lambda doc, name=name, rec=rec, part=part: size_block(name, rec, uses, part)
    return out


def render(text: str, doc: Path, generators: dict) -> str:
    def body(match):
        name = match["name"]
        if name not in generators:
            raise SystemExit(f"{doc}: unknown generated block {name!r}; known: {', '.join(sorted(generators))}")
        return f"{match[1]}{generators[name](doc)}\n{match[4]}"

    return BLOCK.sub(body, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from its records")
    p.add_argument("--records", default=str(RESULTS), help="the folder of JSON records")
    p.add_argument("docs", nargs="*", help="files to rewrite (default: README.md and docs/results.md)")
    args = p.parse_args(argv)
    generators = blocks(load_records(Path(args.records)))
    stale = []
    for doc in [Path(d) for d in args.docs] or list(DOCS):
        text = doc.read_text(encoding="utf-8")
        new = render(text, doc, generators)
        if new != text:
            stale += [f"{doc}: {m['name']}" for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(new))
                      if m["body"] != n["body"]]
            if not args.check:
                doc.write_text(new, encoding="utf-8")
    for line in stale:
        print(("differs from its records: " if args.check else "rewritten: ") + line)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
