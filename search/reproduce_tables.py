"""The tables of a reproduction: ``reproduce.md`` from the record ``search/reproduce.py`` writes.

Per net: ours (mean, 95% CI, seeds; what it is, e.g. "from scratch"; where the report's metric is not test accuracy,
our test accuracy beside it), the published number and the verdict from the CI, training images, the test-split use,
epochs searched and trained against what the report spent; then how each search ran (too few epochs to search, or a
proxy) and ASHA's rung agreement.
"""
from __future__ import annotations

from search.reproduce_plans import RULE_OWN_AND_DEFAULTS


def _images(record: dict) -> str:
    sizes = sorted({n.get("train_images") or 0 for n in record["nets"]})
    return " / ".join(f"{s:,} images of {record['train_on']}" if s else f"all of {record['train_on']}" for s in sizes)


def _ours(n: dict) -> str:
    """Our number with its CI and seeds, what it is (e.g. from scratch) and, where the report's metric is not test
    accuracy, our test accuracy beside it (with the report's and a verdict where it published one)."""
    from analysis.tables import fmt_ci

    mark = "**" if n["verdict"] == "beats" else ""
    text = f"{mark}{fmt_ci(n)}{mark} ({len(n['seeds'])})" + (f", {n['ours_note']}" if n.get("ours_note") else "")
    if n["metric"] != "test_accuracy":
        text += f"; test accuracy {fmt_ci(n['test_accuracy'])}"
        if n.get("published_test_accuracy") is not None:
            text += f" (report: {n['published_test_accuracy']:.4f}, {n['test_verdict']})"
    return text


def _search_notes(record: dict) -> list[str]:
    notes = []
    for n in record["nets"]:
        if n.get("search_rule") == RULE_OWN_AND_DEFAULTS:
            notes.append(f"- {n['arch']}: not searched: a fifth of the report's {n['report_epochs']:,} tuning epochs "
                         f"is {n['report_epochs'] // 5:,}, too few for TPE, so only the report's own setting and the "
                         f"long-horizon default were tried; the better on validation was retrained.")
        if n.get("search_images"):
            notes.append(f"- {n['arch']}: searched on a proxy, the first {n['search_images']:,} training images, "
                         f"trials of <= {n['search_max_epochs']} epochs (each counted as a full epoch in the budget); "
                         f"the final runs on the full protocol. Its rung agreement below is measured within the "
                         f"proxy.")
    return notes


def markdown_table(record: dict) -> str:
    rows = ["| net | metric | ours: mean ± 95% CI (seeds) | published | verdict (95% CI) | train images | "
            "test-split use | search epochs (budget) | final epochs | report's tuning epochs | wall: search + final |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for n in record["nets"]:
        use = ", ".join(str(u) for u in n.get("test_split_use") or []) or "?"
        rows.append(f"| {n['arch']} | {n['metric']} | {_ours(n)} | "
                    f"{n['published']:.4f} ({n['published_note']}) | {n['verdict']} | "
                    f"{n['train_images'] or 'all':,} | {use} of {n.get('test_split_uses') or '?'} | "
                    f"{n['search_epochs']:,} "
                    f"({n['search_epoch_budget']:,}) | {n['final_epochs']:,} ({n['repeats']} x "
                    f"{n['final_epochs_per_run']}) | {n['report_epochs']:,} | "
                    f"{n['wall_seconds']['search'] / 60:.0f} + {n['wall_seconds']['evaluate'] / 60:.0f} min |")
    rungs = ["| net | rung -> next | trials at both | Kendall tau | best at the next was in the kept 1/eta |",
             "|---|---|---:|---:|---|"]
    for n in record["nets"]:
        for r in n.get("rung_agreement", []):
            tau = "" if r["kendall_tau"] is None else f"{r['kendall_tau']:+.3f}"
            kept = {None: "", True: "yes", False: "no"}[r["best_later_was_kept"]]
            rungs.append(f"| {n['arch']} | {r['from_epoch']} -> {r['to_epoch']} | {r['trials']} | {tau} | {kept} |")
    notes = _search_notes(record)
    validation = (" The validation accuracy is the final model's on the held-out validation split, as the report "
                  "measured it; the test accuracy beside it is a scoring of the test split like any other."
                  if any(n["metric"] == "val_accuracy" for n in record["nets"]) else "")
    return (f"# {record['title']}: reproduced with cifar-tune\n\nFinal runs trained on "
            f"{_images(record)} (the report's final model: {record.get('report_train_images') or '?'}; "
            f"{record.get('report_train_images_why', '')}). Each config is one use of the test split, counted in the "
            f"ledger (the 'test-split use' column: this use of this data's test split for the net, of all so far). "
            f"Verdicts from the 95% CI: beats = lower bound above the published number, matches = the CI contains "
            f"it, misses = upper bound below it.{validation} {record['caveat']}.\n\n" + "\n".join(rows)
            + ("\n\nHow the searches ran:\n\n" + "\n".join(notes) if notes else "")
            + "\n\nDoes ASHA keep what wins later? Validation-accuracy rank agreement between consecutive rungs, among "
            "the trials that reached both:\n\n" + "\n".join(rungs) + "\n")
