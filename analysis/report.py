"""``cifar-tune report EXP``: the main tables in the terminal, every table as Markdown / CSV / LaTeX / HTML, and
one self-contained ``report.html`` (plotly.js inlined once, so it opens offline).
"""
from __future__ import annotations

import errno
import html
import json
import os
from pathlib import Path

import pandas as pd

from analysis import figures, pareto, tables
from analysis.load import Experiment, ExperimentError, load
from trainables.config import METRIC

REPORT_FILE = "report.html"
REPORT_DIR = "report"  # EXP/report: where `report` writes its tables and REPORT_FILE by default
MAIN_TABLES = ("comparison", "grid_table", "pareto")  # above the figures; the leaderboard and effect tables follow them
# Any script error on the page lands in #js-errors, so a headless browser (and a reader) can see it.
ERROR_HOOK = ("<div id='js-errors' class='note' style='display:none'></div><script>window.addEventListener('error',"
              "function(e){var d=document.getElementById('js-errors');d.style.display='block';"
              "d.textContent+='script error: '+e.message+' ';});"
              "window.addEventListener('unhandledrejection',function(e){var d=document.getElementById('js-errors');"
              "d.style.display='block';d.textContent+='script error: '+e.reason+' ';});</script>")
CSS = """body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1400px;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}table.table{border-collapse:collapse;
font-size:.85em;margin:8px 0}table.table td,table.table th{border:1px solid #ddd;padding:3px 7px;text-align:right}
table.table th{background:#f4f4f4}.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
.meta{color:#555;font-size:.9em}code{background:#f4f4f4;padding:1px 4px}.scroll{overflow-x:auto}"""


def build_tables(exp: Experiment, top_k: int = 3) -> list[tuple[str, str, pd.DataFrame]]:
    """(file name, caption, table) for every table of the experiment, the main ones first."""
    budget = (f"grid: {len(exp.trials)} runs" if exp.is_grid else
              f"equal budget: {exp.spec.get('num_samples')} trials x <= {exp.spec.get('max_epochs')} epochs per net")
    out = [("comparison", f"Cross-net comparison ({budget}); best config by {METRIC}", tables.comparison(exp))]
    grid = tables.grid_table(exp)
    if grid is not None:
        out.append(("grid_table", f"Preset {exp.spec['preset']}: the report's table regenerated, published "
                                  f"numbers beside ours", grid))
    out.append(("pareto", pareto.caption(exp), pareto.pareto_table(exp)))
    out.append(("leaderboard", f"Top-{top_k} configs per net by best {METRIC}", tables.leaderboard(exp, top_k)))
    decisions = tables.decisions_table(exp)
    if decisions is not None:
        out.append(("decisions", _decisions_caption(exp), decisions))
    epoch, effects = tables.effect_tables(exp)
    for name, t in effects.items():
        out.append((f"effect_{name}", f"Effect of {name}: {METRIC} at epoch {epoch}, which every trial reached",
                    t))
    return out


def _decisions_caption(exp: Experiment) -> str:
    scheduler = exp.spec.get("scheduler")
    if scheduler == "pbt":
        return ("PBT per trial: who copied whom at which epoch, old → new hyperparameters, and whose training the "
                "final weights hold (lineage)")
    if scheduler == "hyperband":
        return "HyperBand per trial: its bracket, where it waited, and where it was kept or stopped (value vs cut-off)"
    return "The scheduler per trial: where it was kept or stopped (value vs cut-off)"


def _terminal(df: pd.DataFrame) -> str:
    shown = df.copy()
    for c in shown.columns:
        shown[c] = shown[c].map(tables.fmt_value)
    return shown.to_string(index=False, max_colwidth=60)


def _figures(exp: Experiment) -> list[tuple[str, object, str]]:
    out = [("Learning curves", *figures.learning_curves(exp)), ("ASHA rung survival", *figures.rung_survival(exp))]
    for arch in exp.spec["archs"]:
        out.append((f"Parallel coordinates: {arch}", *figures.parallel_coordinates(exp, arch)))
    out += [("Hyperparameter importance", *figures.importance(exp)),
            ("Accuracy vs parameters", *figures.accuracy_vs_params(exp)),
            ("Hypervolume over time", *pareto.hypervolume_figure(exp)),
            ("Confusion matrices", *figures.confusion_matrices(exp))]
    return out


def _status_line(exp: Experiment) -> str:
    counts = exp.frame["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in ("completed", "stopped", "diverged", "errored", "running", "pending")
                     if s in counts)


def _table_html(caption: str, df: pd.DataFrame) -> str:
    return (f"<h2>{html.escape(caption)}</h2><div class='scroll'>"
            + df.to_html(index=False, border=0, classes="table", na_rep="", float_format=tables.fmt_value) + "</div>")


def render_html(exp: Experiment, built: list[tuple[str, str, pd.DataFrame]]) -> str:
    spec = exp.spec
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cifar-tune report: {html.escape(exp.name)}"
             f"</title><style>{CSS}</style></head><body>",
             ERROR_HOOK, f"<h1>cifar-tune report: {html.escape(exp.name)}</h1>",
             f"<p class='meta'>{html.escape(str(exp.path.resolve()))}<br>nets {', '.join(spec['archs'])}; "
             f"{len(exp.trials)} trials ({_status_line(exp)}); sampler {spec.get('sampler')}, scheduler "
             f"{spec.get('scheduler')}, max {spec.get('max_epochs')} epochs; fixed "
             f"<code>{html.escape(json.dumps(spec.get('fixed', {})))}</code><br>command "
             f"<code>{html.escape(exp.record.get('command', ''))}</code></p>"]
    if exp.evaluation:
        ev = exp.evaluation
        parts.append(f"<p class='meta'>test set: {ev['test_images']:,} images, {ev['mode']}, trained on "
                     f"{ev['train_on']}, evaluated {ev['created']}</p>")
    else:
        parts.append("<p class='note'>No test-set evaluation yet: test columns are empty until "
                     "<code>cifar-tune evaluate</code> runs.</p>")
    main = [b for b in built if b[0] in MAIN_TABLES]
    for name, caption, df in main:
        parts.append(_table_html(caption, df))
    first = True
    for title, fig, note in _figures(exp):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if fig is None:
            parts.append(f"<p class='note'>Not drawn: {html.escape(note)}</p>")
            continue
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        # plotly.js goes inline once, with the first figure; the rest reuse it. No CDN: the page works offline.
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False}))
        first = False
    for name, caption, df in built:
        if name not in MAIN_TABLES:
            parts.append(_table_html(caption, df))
    parts.append("</body></html>")
    return "\n".join(parts)


def make_out_dir(out_dir: Path) -> None:
    """``out_dir`` made (with its parents) for the report; one that cannot be (a file there or above it, a read-only
    or virtual filesystem) is an ExperimentError naming it. A full disk is left to the CLI's disk-full line."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise
        why = e.strerror or str(e)
        for path in (out_dir, *out_dir.parents):  # a file where a folder must be: name it
            try:
                if path.exists() and not path.is_dir():
                    why = f"{str(path)!r} is a file, not a folder"
                    break
            except OSError:
                continue
        raise ExperimentError(f"cannot write the report into {str(out_dir)!r}: {why}") from None


def write_report(exp_dir: str | Path, out: str | Path | None = None, top_k: int = 3, quiet: bool = False,
                 without_study: bool = False) -> int:
    """Print the main tables, write every table (md/csv/tex/html) and ``report.html`` into ``out``
    (default ``EXP/report``). Returns the CLI exit status (0). ``without_study``: from the Ray results alone, the
    Optuna study unopened (for one that cannot be read; the importance figure is left out)."""
    from trainables.config import is_count

    if not is_count(top_k, 1):
        raise ExperimentError(f"report: top_k must be an integer >= 1, got {top_k!r}")
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise ExperimentError(f"report: out must be a folder's path, got {out!r}")
    exp = load(exp_dir, without_study=without_study)
    out_dir = Path(out) if out else exp.path / REPORT_DIR
    make_out_dir(out_dir)
    built = build_tables(exp, top_k)
    written = []
    for name, caption, df in built:
        written += tables.write_table(df, out_dir, name, caption)
    page = out_dir / REPORT_FILE
    tmp = out_dir / f".{REPORT_FILE}.tmp"
    tmp.write_text(render_html(exp, built), encoding="utf-8")
    tmp.replace(page)
    if not quiet:
        print(f"experiment {exp.path}: {len(exp.trials)} trials ({_status_line(exp)})")
        for name, caption, df in built:
            # The decisions table is long for an ASHA search of many trials: in the terminal for HyperBand and PBT.
            if name in ("comparison", "grid_table", "pareto", "leaderboard") or (
                    name == "decisions" and exp.spec.get("scheduler") in ("hyperband", "pbt")):
                print(f"\n{caption}\n{_terminal(df)}")
        print(f"\nwrote {len(written)} table files and {page}")
    return 0
