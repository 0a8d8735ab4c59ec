"""``cifar-tune archs``: the registered nets, their sizes, report settings and knobs."""
from __future__ import annotations

from search.cli.common import add_json, emit_json


def arch_options(spec) -> list[str]:
    """The arch-specific config keys a net's builder takes (size knobs such as width, resnet18's stem ...)."""
    import inspect

    from trainables.config import ARCH_KWARGS

    accepted = inspect.signature(spec.builder).parameters
    return [k for k in ARCH_KWARGS if k in accepted]


def cmd_archs(args) -> int:
    from trainables.models import count_params, create_model, get_arch, list_models

    rows = []
    for name in list_models():
        spec = get_arch(name)
        rows.append({"name": name, "report": spec.report, "params": count_params(create_model(name)),
                     "defaults": spec.defaults, "published": spec.published, "description": spec.description,
                     "options": arch_options(spec)})
    rows += installed_nets(rows)
    if args.json:
        emit_json(rows)
        return 0
    print(f"{'name':<14} {'params':>11}  {'report':<34} defaults")
    for r in rows:
        d = r["defaults"]
        short = ", ".join(f"{k}={d[k]}" for k in ("optimizer", "lr", "batch_size", "epochs", "dropout", "norm")
                          if k in d)
        params = f"{r['params']:>11,}" if r["params"] is not None else f"{'?':>11}"
        print(f"{r['name']:<14} {params}  {r['report'][:34]:<34} {short}" + (f"  error: {r['error']}"
                                                                             if r.get("error") else ""))
    return 0


def installed_nets(known: list[dict]) -> list[dict]:
    """Rows for the nets installed packages offer through the ``cifar_tune.nets`` entry-point group (a broken one
    is listed with its one-line error, not dropped: `archs` is where a user looks for it)."""
    from trainables.config import ConfigError
    from trainables.models import NET_GROUP, count_params, create_model, get_arch, list_user_nets
    from trainables.plugins import entry_points

    points = entry_points(NET_GROUP)
    ours = {r["name"] for r in known}
    rows = [{"name": name, "report": f"entry point {points[name].value}", "params": None, "defaults": {},
             "published": {}, "description": "", "options": [],
             "error": f"the repo's own net {name!r} has this name, so --arch {name} never reaches the entry point; "
                      f"rename it"} for name in sorted(set(points) & ours)]  # shadowed: said once, here
    for name in [n for n in list_user_nets() if n in points and n not in ours]:
        row = {"name": name, "report": f"entry point {points[name].value}", "params": None, "defaults": {},
               "published": {}, "description": "", "options": []}
        try:
            spec = get_arch(name)
            row.update(params=count_params(create_model(name)), defaults=spec.defaults, options=list(spec.options))
        except ConfigError as e:
            row["error"] = str(e)
        rows.append(row)
    return rows


def add(sub) -> None:
    a = sub.add_parser("archs", help="list the registered architectures")
    add_json(a)
    a.set_defaults(func=cmd_archs)
