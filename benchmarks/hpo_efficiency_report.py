"""The HPO efficiency benchmark's record, tables and figure, from its unit records (``benchmarks/hpo_efficiency.py``).

Every number here is computed from the units' saved events and retrains by ``benchmarks/anytime.py``; the doc text
(which method reaches the target cheapest, what the tests say) is generated from the record, never typed.
"""
from __future__ import annotations

import datetime as dt
import json
import math

from benchmarks.anytime import (at_epochs, at_times, band, best_so_far, cost_to_reach, epoch_points,
                                hypervolume_so_far, half_cost, paired_test)
from benchmarks.publish import table
from search.spec import TPE_STARTUP

WALL_STEPS = 60  # points of the wall-time curve
WALL_FRACTIONS = (1 / 4, 1 / 2, 1)  # table points: these fractions of the quickest method's median search time
P_LEVEL = 0.05
LOADED = 3.0  # a search's own load is about 2 on 2 cores: above this, something else ran beside it


# --------------------------------------------------------------------------------------------- statistics

def _median(values) -> float:
    import numpy as np

    return float(np.median(values))


def _columns(rows: list[list]) -> list[dict]:
    """Per point: every seed's value and the band across them."""
    cols = [list(c) for c in zip(*rows)] if rows else []
    return [{"per_seed": c, **(b or {})} for c, b in zip(cols, band(rows))]


def compare(units: dict, budget: int, reference: str, curve_fn) -> dict:
    """Anytime curves of ``units`` (method -> unit records) cut at ``budget`` epochs: bands at every epoch and on a
    wall grid, values at the table's points, and Wilcoxon tests (paired by seed) of ``reference`` against each
    other method there. ``curve_fn(events) -> values``: best accuracy so far, or hypervolume so far."""
    from benchmarks.hpo_efficiency import unit_load

    curves = {m: {u["seed"]: ([e["t"] for e in u["events"][:budget]], curve_fn(u["events"][:budget])) for u in us}
              for m, us in units.items()}
    ends = {m: {s: (t[-1] if t else 0.0) for s, (t, _) in by.items()} for m, by in curves.items()}
    t_common = min(_median(list(e.values())) for e in ends.values())
    t_max = max(max(e.values()) for e in ends.values())
    grid_e, grid_w = list(range(1, budget + 1)), [round(t_max * k / WALL_STEPS, 2) for k in range(1, WALL_STEPS + 1)]
    points_e, points_w = epoch_points(budget), [round(t_common * f, 1) for f in WALL_FRACTIONS]
    per, methods = {}, {}
    unit_by_seed = {m: {u["seed"]: u for u in us} for m, us in units.items()}
    for m, by in curves.items():
        seeds = sorted(by)
        per[m] = {s: {"e": at_epochs(by[s][1], points_e), "w": at_times(*by[s], points_w)} for s in seeds}
        unit_of = unit_by_seed[m]
        methods[m] = {"seeds": seeds, "trials": [u["planned_trials"] for u in units[m]][0],
                      "budget_enforced": all(u["budget_enforced"] for u in units[m]),
                      "spent_epochs": [unit_of[s]["spent_epochs"] for s in seeds],
                      "seconds_to_budget": [ends[m][s] for s in seeds],
                      "search_wall_seconds": [unit_of[s]["wall_seconds"] for s in seeds],
                      "load_1m_max": [unit_load(unit_of[s]) for s in seeds],
                      "curve_epochs": band([at_epochs(by[s][1], grid_e) for s in seeds]),
                      "curve_wall": band([at_times(*by[s], grid_w) for s in seeds]),
                      "at_epochs": _columns([per[m][s]["e"] for s in seeds]),
                      "at_wall": _columns([per[m][s]["w"] for s in seeds])}
    tests = {}
    for m in curves:
        if m == reference or reference not in curves:
            continue
        common = sorted(set(per[reference]) & set(per[m]))
        ref_of, m_of = unit_by_seed[reference], unit_by_seed[m]
        tests[m] = {"seeds": common, "shared_configs": [shared_configs(ref_of[s], m_of[s]) for s in common],
                    "same_pick": sum(_pick(ref_of[s]) is not None and _pick(ref_of[s]) == _pick(m_of[s])
                                     for s in common)}
        for key, points in (("epochs", points_e), ("wall", points_w)):
            k = key[0]
            tests[m][key] = [paired_test([per[reference][s][k][i] for s in common], [per[m][s][k][i] for s in common])
                             for i in range(len(points))]
    return {"budget": budget, "reference": reference, "epoch_grid": grid_e, "wall_grid": grid_w,
            "epoch_points": points_e, "wall_points": points_w, "methods": methods, "tests": tests,
            "_curves": curves}


def shared_configs(a: dict, b: dict) -> int:
    """How many configs two units (seed i of two methods) both tried. TPE draws at random until its start-up trials
    have ended, with Optuna's RandomSampler on its own seed, so seed i of a TPE method and of a random one share
    their first configs: their paired difference comes from the trials after those."""
    def keys(unit):
        return {json.dumps(c, sort_keys=True) for c in unit["configs"].values()}

    return len(keys(a) & keys(b))


def _pick(unit: dict) -> str | None:
    return json.dumps(unit["pick"]["config"], sort_keys=True) if unit.get("pick") else None


def anytime_block(arch: str, units: dict, retrains: dict, budget: int, rows: int, reference: str) -> dict:
    """One net's comparison, plus the target (the report's grid's median best), the cost to reach it, the
    published number, and the held-out scores of the retrained picks."""
    from trainables.models import get_arch

    out = compare(units, budget, reference, best_so_far)
    curves = out.pop("_curves")
    grid = out["methods"].get("grid")
    target = grid["curve_epochs"][-1]["median"] if grid and grid["curve_epochs"][-1] else None
    published = dict(get_arch(arch).published)
    best_anywhere = max((v for by in curves.values() for _, c in by.values() for v in c if v is not None),
                        default=None)
    for m, by in curves.items():
        info = out["methods"][m]
        for key, goal in (("reach_target", target), ("reach_published", published.get("value"))):
            costs = [cost_to_reach(*by[s], goal) if goal is not None else {"epochs": None, "seconds": None}
                     for s in info["seeds"]]
            info[key] = {"epochs": [c["epochs"] for c in costs], "seconds": [c["seconds"] for c in costs],
                         "half_epochs": half_cost([c["epochs"] for c in costs]),
                         "half_seconds": half_cost([c["seconds"] for c in costs])}
        info["picks"] = [{"seed": u["seed"], **{k: v for k, v in (u["pick"] or {}).items() if k != "config"},
                          "config": {k: v for k, v in ((u["pick"] or {}).get("config") or {}).items()
                                     if k not in ("data_dir", "subset", "val_size", "latency_batch")}}
                         for u in sorted(units[m], key=lambda u: u["seed"])]
        done = {r["seed"]: r for r in retrains.get(m, [])}
        info["heldout"] = {"seeds": sorted(done), "per_seed": [done[s]["heldout_accuracy"] for s in sorted(done)],
                           "seconds": [done[s]["seconds"] for s in sorted(done)],
                           "band": (band([[done[s]["heldout_accuracy"]] for s in sorted(done)]) or [None])[0]}
    ref_done = {r["seed"]: r["heldout_accuracy"] for r in retrains.get(reference, [])}
    for m, test in out["tests"].items():
        other = {r["seed"]: r["heldout_accuracy"] for r in retrains.get(m, [])}
        common = sorted(set(ref_done) & set(other))
        test["heldout"] = paired_test([ref_done[s] for s in common], [other[s] for s in common])
    out.update(arch=arch, rows=rows, target=target, published=published, best_anywhere=best_anywhere,
               cheapest={"epochs": _cheapest(out["methods"], "half_epochs"),
                         "seconds": _cheapest(out["methods"], "half_seconds")})
    return out


def _cheapest(methods: dict, key: str) -> list[str]:
    costs = {m: info["reach_target"][key] for m, info in methods.items() if info["reach_target"][key] is not None}
    if not costs:
        return []
    low = min(costs.values())
    return [m for m, c in costs.items() if c == low]


def front_block(arch: str, units: dict, budget: int, objectives, reference: str) -> dict:
    """The size front's comparison: hypervolume so far, at one reference point common to all its units."""
    from trainables.objectives import reference_point, to_loss

    names, directions = [n for n, _ in objectives], [d for _, d in objectives]
    losses = [to_loss([e.get("value") if n == names[0] else e.get(n) for n in names], directions)
              for us in units.values() for u in us for e in u["events"][:budget]]
    ref = reference_point([x for x in losses if all(map(math.isfinite, x))], names)
    out = compare(units, budget, reference, lambda ev: hypervolume_so_far(ev, objectives, ref))
    out.pop("_curves")
    out.update(arch=arch, objectives=objectives, reference_point=ref)
    return out


def summarise(bench, units: dict, retrains: dict, skipped: dict, methods: dict, front_methods: dict) -> dict:
    import platform

    import optuna
    import ray
    import scipy
    import torch

    from benchmarks.common import machine
    from benchmarks.hpo_efficiency import FRONT_REFERENCE, OBJECTIVES, PRESET_OF, REFERENCE

    a = bench.args
    record = {"what": "HPO efficiency, anytime: best validation accuracy vs epochs and wall time at equal budget",
              "machine": machine(), "written": dt.datetime.now().isoformat(timespec="seconds"),
              "versions": {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                           "optuna": optuna.__version__, "scipy": scipy.__version__},
              "settings": {"seeds": a.seeds, "max_epochs": a.max_epochs, "subset": a.subset, "val_size": a.val_size,
                           "heldout": a.heldout, "grid_rows": a.grid_rows, "retrain": not a.no_retrain,
                           "retrain_seed": "1000 + seed", "smoke": a.smoke, "data_dir": bench.fixed["data_dir"],
                           "methods": a.methods, "front_archs": a.front_archs, "objectives": OBJECTIVES},
              "skipped": skipped, "anytime": {}, "front": {}}
    for arch, by_method in units["anytime"].items():
        by_method = {m: by_method[m] for m in methods if m in by_method}
        block = anytime_block(arch, by_method, retrains.get(arch, {}), bench.budget(arch), len(bench.rows(arch)),
                              REFERENCE)
        record["anytime"][arch] = {**block, "preset": PRESET_OF[arch],
                                   "units_planned": a.seeds * len([m for m in a.methods if m not in skipped])}
    for arch, by_method in units["front"].items():
        by_method = {m: by_method[m] for m in front_methods if m in by_method}
        record["front"][arch] = {**front_block(arch, by_method, bench.budget(arch), OBJECTIVES, FRONT_REFERENCE),
                                 "units_planned": a.seeds * len(front_methods)}
    return record


# --------------------------------------------------------------------------------------------- tables

def _cell(b: dict | None, digits: int = 4) -> str:
    if not b or b.get("median") is None:
        return "—"
    return f"{b['median']:.{digits}f} [{b['q1']:.{digits}f}, {b['q3']:.{digits}f}]"


def _test_cell(t: dict) -> str:
    if t.get("p") is None:
        return "—"
    p = f"{t['p']:.3f}" if t["p"] >= 0.001 else f"{t['p']:.1e}"
    star = "**" if t["p"] < P_LEVEL else ""
    return f"{t['median_difference']:+.4f}, {star}p {p}{star}"


def _table(head: list[str], rows: list[list], align: str) -> list[str]:
    return table(head, rows, align).splitlines()


def _comparison_tables(block: dict, value: str, digits: int) -> list[str]:
    pe, pw = block["epoch_points"], block["wall_points"]
    held = any(info.get("heldout", {}).get("seeds") for info in block["methods"].values())
    rows = []
    for m, info in block["methods"].items():
        rows.append([m, len(info["seeds"]), info["trials"], f"{_median(info['spent_epochs']):.0f}"
                     + ("" if info["budget_enforced"] else " (cut)"),
                     f"{_median(info['search_wall_seconds']) / 60:.1f}"]
                    + [_cell(c, digits) for c in info["at_epochs"]] + [_cell(c, digits) for c in info["at_wall"]]
                    + ([f"{_cell(info['heldout']['band'])} ({len(info['heldout']['seeds'])})"] if held else []))
    head = (["method", "seeds", "trials", "epochs trained (median)", "search wall, min (median)"]
            + [f"{value} @ {p} epochs" for p in pe] + [f"{value} @ {p:.0f} s" for p in pw]
            + (["held-out acc of the retrained pick (seeds)"] if held else []))
    lines = _table(head, rows, "---|---:|---:|---:|---:" + "|---:" * (len(head) - 5))
    ref = block["reference"]
    test_rows = []
    for m, t in block["tests"].items():
        test_rows.append([f"{ref} − {m}", len(t["seeds"])] + [_test_cell(x) for x in t["epochs"]]
                         + [_test_cell(x) for x in t["wall"]] + ([_test_cell(t["heldout"])] if held else []))
    if test_rows:
        thead = (["paired by seed", "pairs"] + [f"@ {p} epochs" for p in pe] + [f"@ {p:.0f} s" for p in pw]
                 + (["held-out"] if held else []))
        lines += ["", "Wilcoxon signed-rank tests, two-sided, paired by seed: median difference, p (bold: p < "
                      f"{P_LEVEL}; each p is for its own comparison, not corrected for the number of cells).", ""]
        lines += _table(thead, test_rows, "---|---:" + "|---:" * (len(thead) - 2))
        shared = [f"{ref} and {m} tried {_median(t['shared_configs']):.0f} configs in common (median over seeds; "
                  f"of {block['methods'][ref]['trials']} and {block['methods'][m]['trials']}) and picked the same "
                  f"config in {t['same_pick']} of {len(t['seeds'])} seeds"
                  for m, t in block["tests"].items() if t.get("shared_configs") and max(t["shared_configs"]) > 0]
        if shared:
            lines += ["", "Shared draws: " + "; ".join(shared) + f". TPE samples at random until its first "
                      f"{TPE_STARTUP} trials have ended, with Optuna's RandomSampler on the same seed, so seed i of a "
                      f"TPE method and of a random one start with the same configs: their paired difference comes "
                      f"from the trials after."]
    return lines


def _reach_sentence(block: dict) -> str:
    target, pub, methods = block["target"], block["published"], block["methods"]
    if target is None:
        return "No grid in this run, so no target to reach."
    by_e, by_s = block["cheapest"]["epochs"], block["cheapest"]["seconds"]
    never = [m for m, i in methods.items() if i["reach_target"]["half_epochs"] is None]

    def who(names, key, unit):
        cost = {m: methods[m]["reach_target"][key] for m in names}
        return " and ".join(f"**{m}** ({c:.0f} {unit if round(c) != 1 else unit.rstrip('s')})" for m, c in cost.items())

    text = (f"Target: the report's grid's median best within the budget, {target:.4f} validation accuracy. "
            f"Cheapest to reach it (epochs / wall seconds by which half of the seeds had): by epochs "
            f"{who(by_e, 'half_epochs', 'epochs') or 'none'}; by wall time {who(by_s, 'half_seconds', 's') or 'none'}.")
    if never:
        text += f" Fewer than half of the seeds of {', '.join(never)} reached it within the budget."
    if pub.get("value") is not None:
        reached = {m: sum(e is not None for e in i["reach_published"]["epochs"]) for m, i in methods.items()}
        words = f"{pub['value']} {pub.get('metric', '').replace('_', ' ')}, {pub.get('source', '')}"
        if any(reached.values()):
            text += (f" The published number ({words}) was reached by "
                     + ", ".join(f"{m} ({k} of {len(methods[m]['seeds'])} seeds)" for m, k in reached.items() if k)
                     + " (validation accuracy on the subset protocol, not the report's test protocol).")
        else:
            text += (f" The published number ({words}, after full-data training) is out of reach of this protocol: "
                     f"the best validation accuracy any search here reached is {block['best_anywhere']:.4f}.")
    return text


def _load_sentence(block: dict) -> str:
    """How many searches' wall times include other work (their 1-minute load above ``LOADED``)."""
    loaded = {m: sum(x is not None and x > LOADED for x in info.get("load_1m_max", [])) for m, info in
              block["methods"].items()}
    total = sum(len(info.get("load_1m_max", [])) for info in block["methods"].values())
    if not any(loaded.values()):
        return f"Every search ran at a 1-minute load of at most {LOADED:g} (itself about 2): the wall times are its own."
    return (f"{sum(loaded.values())} of {total} searches ran at a 1-minute load above {LOADED:g} (the search itself "
            f"is about 2 on the 2 cores), so their wall times include other work: "
            + ", ".join(f"{m} {n}" for m, n in loaded.items() if n)
            + ". The epoch columns do not depend on it; read the wall-time columns with that in mind.")


def markdown(record: dict) -> str:
    s = record["settings"]
    lines = [f"{record['machine']}; ray {record['versions']['ray']}, optuna {record['versions']['optuna']}, scipy "
             f"{record['versions']['scipy']}; written {record['written']}.", "",
             f"Protocol: every search trains on the first {s['subset']:,} images of the seeded training split and is "
             f"judged on a {s['val_size']:,}-image validation split (both the same for every method and seed), "
             f"every trial to at most {s['max_epochs']} epochs. Budget per net: the report's grid, every row cut to "
             f"{s['max_epochs']} epochs (its epochs are the budget B). Seed i of a method = sampler seed i and "
             f"training seed i; {s['seeds']} seeds per method. The subset is chosen so that one search takes minutes "
             f"on 2 CPU cores (medians below); accuracies are therefore far below full-data numbers, and the ranking "
             f"of methods, not the level, is the result. Cells: median [interquartile range] across seeds of the "
             f"best validation accuracy found after that many epochs (or seconds of wall time) were spent; a search "
             f"that spent less keeps its last value. Wall time is on a shared 2-core machine: it includes each "
             f"search's start-up and whatever else ran beside it."
             + (f" Each seed's pick (its best config within B) was retrained for {s['max_epochs']} epochs with a "
                f"fresh seed (1000 + i) on the same training images and scored on {s['heldout']:,} held-out "
                f"training-split images that no search trained or validated on (not the test split, which this "
                f"benchmark never reads)." if s["retrain"] else " Retrains were not run (--no-retrain)."), ""]
    present = list(dict.fromkeys(m for part in ("anytime", "front") for b in record[part].values()
                                 for m in b["methods"]))
    table = record.get("methods_table", {})
    if present:
        lines += ["Methods: " + "; ".join(f"{m} ({table[m]['what']})" if m in table else m for m in present)
                  + ". Trials per search: ASHA methods B // 2 (the scheduler holds B), random without stopping and "
                    "PBT's population B // E, HyperBand whole bands (it holds no budget: its curve is cut at B), "
                    "the grid its rows" + (" (PBT's pick is the config at its best epoch, retrained from scratch)"
                                           if "pbt" in present else "") + ".", ""]
    if record["skipped"]:
        lines += ["Not run, refused by the experiment spec: " + "; ".join(f"{m} ({why})"
                                                                           for m, why in record["skipped"].items())
                  + ".", ""]
    for arch, block in record["anytime"].items():
        units = sum(len(i["seeds"]) for i in block["methods"].values())
        lines += [f"**{arch}** (report {block['preset'].removeprefix('report')}'s grid: {block['rows']} rows × "
                  f"{s['max_epochs']} epochs = budget {block['budget']} epochs; {units} of {block['units_planned']} "
                  f"searches finished)", ""]
        lines += _comparison_tables(block, "best val acc", 4)
        lines += ["", _reach_sentence(block), _load_sentence(block), ""]
    for arch, block in record["front"].items():
        ref = block["reference_point"]
        lines += [f"**Size front, {arch}** (objectives {', '.join(':'.join(o) for o in block['objectives'])}; "
                  f"MO-ASHA, budget {block['budget']} epochs; hypervolume of every point reported so far at the "
                  f"common reference (accuracy {ref[0]:g}, {ref[1]:,.0f} params), normalised by the box from "
                  f"(accuracy 1, 0 params))", ""]
        lines += _comparison_tables(block, "hypervolume", 4)
        lines.append("")
    from benchmarks.hpo_efficiency import RECORD_NAME

    name = record.get("record", RECORD_NAME)  # --record: a run of some methods published beside the full one
    lines.append(f"Record: [results/{name}.json](results/{name}.json); figure (median and "
                 f"interquartile band): [results/{name}.html](results/{name}.html). Command: "
                 f"`{record.get('command', 'python -m benchmarks.hpo_efficiency')}`.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- figure

def figure(record: dict, path) -> None:
    """Median and interquartile band of every anytime curve, against epochs and against wall time."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    blocks = [(f"{arch}: best val acc", b) for arch, b in record["anytime"].items()]
    blocks += [(f"{arch} size front: hypervolume", b) for arch, b in record["front"].items()]
    if not blocks:
        return
    titles = [f"{name} vs {x}" for name, _ in blocks for x in ("epochs spent", "wall seconds")]
    fig = make_subplots(rows=len(blocks), cols=2, subplot_titles=titles)
    names = list(dict.fromkeys(m for _, b in blocks for m in b["methods"]))
    colour = {m: qualitative.Plotly[i % len(qualitative.Plotly)] for i, m in enumerate(names)}
    shown: set = set()
    for row, (_, block) in enumerate(blocks, start=1):
        for m, info in block["methods"].items():
            for col, (xs, curve) in enumerate(((block["epoch_grid"], info["curve_epochs"]),
                                               (block["wall_grid"], info["curve_wall"])), start=1):
                pts = [(x, c) for x, c in zip(xs, curve) if c]
                if not pts:
                    continue
                x = [p[0] for p in pts]
                fig.add_trace(go.Scatter(x=x + x[::-1], y=[p[1]["q3"] for p in pts] + [p[1]["q1"] for p in pts][::-1],
                                         fill="toself", fillcolor=colour[m], opacity=0.15, line={"width": 0},
                                         hoverinfo="skip", showlegend=False, legendgroup=m), row=row, col=col)
                fig.add_trace(go.Scatter(x=x, y=[p[1]["median"] for p in pts], mode="lines", name=m,
                                         line={"color": colour[m]}, legendgroup=m, showlegend=m not in shown),
                              row=row, col=col)
                shown.add(m)
    fig.update_layout(height=380 * len(blocks), title="HPO efficiency: median and interquartile band across seeds")
    fig.write_html(str(path), include_plotlyjs="cdn")
