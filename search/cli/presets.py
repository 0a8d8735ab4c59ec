"""``cifar-tune presets``: one preset per report, as a grid or a tuned search."""
from __future__ import annotations

import json

from search.cli.common import add_json


def cmd_presets(args) -> int:
    from search.presets import expand_grid, get_preset, grid_cost, list_presets, tuned_plan

    rows = []
    for name in list_presets():
        p = get_preset(name)
        rows.append({"name": name, "report": p.report, "archs": list(p.archs), "grid_points": len(expand_grid(p)),
                     "grid_epochs": grid_cost(p), "tuned": tuned_plan(p), "description": p.description})
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for r in rows:
        t = r["tuned"]
        print(f"{r['name']:<12} {','.join(r['archs']):<28} grid {r['grid_points']:>3} runs / {r['grid_epochs']:>5} "
              f"epochs | tuned {t['num_samples']} trials x <= {t['max_epochs']} epochs, <= {t['epoch_budget']} epochs "
              f"per net  ({r['report']})")
    return 0



def add(sub) -> None:
    p = sub.add_parser("presets", help="one preset per report: its experiment, as a grid or a tuned search")
    add_json(p)
    p.set_defaults(func=cmd_presets)
