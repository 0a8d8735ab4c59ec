"""A net of the user's own (issue 20, item 1): from a .py file or an installed package's entry point, searched end
to end, recorded in the spec and the trial configs, shipped to the Ray workers; a broken one is one line naming
file:line, before Ray starts. The searches live beside Ray set-ups other tests pay for anyway: on embedded Ray in
tests/test_trackers.py (the tracked search is of these nets), on 3 nodes in tests/test_cluster.py (that module's
cluster)."""
from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tests.searchrun import REPO, one_line_error, report

# The smallest nets that learn: one 3x3 conv of 4 channels, global pooling, a linear head. Each writes the file it
# was imported from to LOG, so a test can tell a worker's shipped copy from the original.
FILE_NET = '''
import os
import torch.nn as nn

with open({log!r}, "a") as f:
    f.write(f"file {{os.getpid()}} {{__file__}}\\n")


class FileNet(nn.Module):
    """A tiny net from a file; no dropout or norm knob, so its default space searches neither."""

    def __init__(self, num_classes, in_channels, width=1.0):
        super().__init__()
        c = max(1, round(4 * width))
        self.body = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x):
        return self.body(x)
'''

PACKAGE_NET = '''
import os
import torch.nn as nn

with open({log!r}, "a") as f:
    f.write(f"package {{os.getpid()}} {{__file__}}\\n")


def build(num_classes, in_channels, dropout=0.0, norm="none"):
    """A factory with both knobs."""
    c = 4
    return nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1),
                         nn.Identity() if norm == "none" else nn.GroupNorm(1, c), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))
'''


def write_user_nets(root: Path) -> dict:
    """A net file ``root/nets/nets.py`` and an "installed" package ``epnets`` in ``root/site`` (a *.dist-info with
    entry_points.txt, which importlib.metadata finds on sys.path) offering ``ep_tiny`` in ``cifar_tune.nets``.
    Returns the paths and the PYTHONPATH entry."""
    log = root / "loaded.log"
    net_file = root / "nets" / "nets.py"
    net_file.parent.mkdir(parents=True)
    net_file.write_text(FILE_NET.format(log=str(log)))
    site = root / "site"
    (site / "epnets").mkdir(parents=True)
    (site / "epnets" / "__init__.py").write_text("")
    (site / "epnets" / "models.py").write_text(PACKAGE_NET.format(log=str(log)))
    dist = site / "epnets-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epnets\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cifar_tune.nets]\nep_tiny = epnets.models:build\n")
    return {"file": net_file, "site": site, "log": log, "relative": os.path.relpath(net_file, REPO)}


def loads(log: Path) -> list[tuple[str, int, str]]:
    """(kind, pid, file) of every import of the test nets."""
    rows = [line.split(" ", 2) for line in log.read_text().splitlines()] if log.exists() else []
    return [(kind, int(pid), path) for kind, pid, path in rows]


def search_args(nets: dict, cifar_path, storage: Path, name: str) -> list:
    """Both user nets, 2 trials each, 1 epoch on 200 images (the file net by a path relative to the CLI's cwd)."""
    return ["search", "--arch", f"{nets['relative']}:FileNet,ep_tiny", "--num-samples", 2, "--max-epochs", 1,
            "--data-dir", cifar_path, "--set", "subset=200", "--set", "val_size=100", "--set", "latency_batch=0",
            "--storage", storage, "--name", name]


def check_user_net_experiment(exp: Path, nets: dict, ended=("completed",), samples: int = 2) -> None:
    """What a search of both nets (``samples`` trials each) must leave: spec.json naming each net's code, trial
    configs that do too, every trial ended (``ended``: completed, or stopped where a scheduler may stop them), each
    net's space with exactly the knobs its builder takes."""
    record = json.loads((exp / "spec.json").read_text())
    spec = record["spec"]
    assert spec["archs"] == ["FileNet", "ep_tiny"]
    file_net, ep_net = spec["nets"]["FileNet"], spec["nets"]["ep_tiny"]
    sha = hashlib.sha256(nets["file"].read_bytes()).hexdigest()
    assert file_net == {"ref": f"{nets['relative']}:FileNet", "resolved": f"{nets['file'].resolve()}:FileNet",
                        "path": str(nets["file"].resolve()), "sha256": sha}
    assert ep_net["entry_point"] == "cifar_tune.nets:ep_tiny" and ep_net["resolved"] == "epnets.models:build"
    assert ep_net["sha256"] == hashlib.sha256((nets["site"] / "epnets" / "models.py").read_bytes()).hexdigest()
    spaces = record["spaces"]
    assert "dropout" not in spaces["FileNet"]["params"] and "norm" not in spaces["FileNet"]["params"]
    assert {"dropout", "norm"} <= set(spaces["ep_tiny"]["params"])
    trials = report(exp)
    assert sorted(t["config"]["arch"] for t in trials) == ["FileNet"] * samples + ["ep_tiny"] * samples
    assert {t["status"] for t in trials} <= set(ended) and "completed" in {t["status"] for t in trials}, \
        [t["status"] for t in trials]
    for t in trials:
        net = spec["nets"][t["config"]["arch"]]
        assert (t["config"]["net"], t["config"]["net_sha256"]) == (net["resolved"], net["sha256"])


@pytest.fixture()
def nets(tmp_path):
    return write_user_nets(tmp_path)


def check_shipped(nets: dict) -> None:
    """The driver imported the net file itself; every worker imported the copy Ray shipped it (Tune moves each
    trial into its own working directory, so a worker that found the file some other way would say so)."""
    driver = [p for kind, pid, p in loads(nets["log"]) if kind == "file" and p == str(nets["file"].resolve())]
    shipped = [p for kind, pid, p in loads(nets["log"]) if kind == "file" and p != str(nets["file"].resolve())]
    assert driver and shipped, loads(nets["log"])
    assert all("runtime_resources" in p and p.endswith("/nets.py") for p in shipped), shipped


# --------------------------------------------------------------------------------------------- in this process

def test_user_net_meets_the_registry_checks(nets, monkeypatch):
    """What tests/test_models.py asks of every registry net, asked of a user's net built through the registry."""
    from trainables.models import count_params, create_model, resolve_arch
    from trainables.config import resolve_config

    monkeypatch.chdir(nets["file"].parent)
    spec = resolve_arch("nets.py:FileNet")
    assert spec.name == "FileNet" and spec.options == ("width",) and spec.source["path"] == str(nets["file"])
    cfg = resolve_config({"arch": "nets.py:FileNet", "width": 2})
    assert cfg["arch"] == "FileNet" and cfg["net"] == f"{nets['file']}:FileNet" and resolve_config(cfg) == cfg
    assert count_params(create_model("FileNet", width=2.0)) > count_params(create_model("FileNet"))
    model = create_model("FileNet", in_channels=1, num_classes=3).train()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    model = create_model("FileNet")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    assert nn.functional.cross_entropy(model(x), y).item() < before.item()


def test_entry_point_net_is_found_through_importlib_metadata(nets, monkeypatch):
    from trainables.models import get_arch, list_models, list_user_nets

    monkeypatch.syspath_prepend(str(nets["site"]))
    assert "ep_tiny" in list_user_nets() and "ep_tiny" not in list_models()
    spec = get_arch("ep_tiny")
    assert spec.source["entry_point"] == "cifar_tune.nets:ep_tiny" and spec.defaults == {"dropout": 0.0, "norm": "none"}
    assert set(spec.options) == {"dropout", "norm"}


def test_a_broken_entry_point_is_named_as_typed(nets, monkeypatch, capsys):
    """The error named only the entry point's target ('nomodule_xyz:Net'), not the name the user typed."""
    from search.cli import main

    dist = nets["site"] / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cifar_tune.nets]\nbroken_net = nomodule_xyz:Net\n")
    monkeypatch.syspath_prepend(str(nets["site"]))
    assert main(["search", "--arch", "broken_net", "--storage", str(nets["site"].parent / "r")]) == 2
    one_line_error(capsys, "--arch broken_net (an entry point of cifar_tune.nets)", "no module named 'nomodule_xyz'")


def test_archs_lists_installed_entry_point_nets(nets, monkeypatch, capsys):
    import json

    from search.cli import main
    from trainables.models import count_params, create_model

    monkeypatch.syspath_prepend(str(nets["site"]))
    assert main(["archs", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["ep_tiny"]["report"] == "entry point epnets.models:build" and "error" not in rows["ep_tiny"]
    assert rows["ep_tiny"]["params"] == count_params(create_model("ep_tiny")) > 0
    assert main(["archs"]) == 0 and "ep_tiny" in capsys.readouterr().out
    # an entry point named like a repo net can never be chosen: listed with that said, not left out without a word
    (nets["site"] / "epnets-0.1.dist-info" / "entry_points.txt").write_text(
        "[cifar_tune.nets]\nep_tiny = epnets.models:build\nsimple_cnn = epnets.models:build\n")
    assert main(["archs", "--json"]) == 0
    shadowed = [r for r in json.loads(capsys.readouterr().out) if r["report"] == "entry point epnets.models:build"
                and r["name"] == "simple_cnn"]
    assert len(shadowed) == 1 and "never reaches the entry point" in shadowed[0]["error"]


def test_changed_file_is_refused_where_a_record_names_it(nets, monkeypatch):
    """A trial config pins the file's content: a worker given a changed file refuses it instead of running it."""
    from trainables.config import ConfigError, resolve_config

    monkeypatch.chdir(nets["file"].parent)
    cfg = resolve_config({"arch": "nets.py:FileNet"})
    nets["file"].write_text(nets["file"].read_text() + "\n# edited\n")
    with pytest.raises(ConfigError, match=r"changed since it was recorded"):
        resolve_config(cfg)


# --------------------------------------------------------------------------------------------- one-line errors

BROKEN = {
    "syntax": ("x = 1\ndef f(:\n    pass\n", "SyntaxError", 2),
    "import": ("import math\n\n\ndef helper():\n    return 1 / 0\n\n\nvalue = helper()\n", "ZeroDivisionError", 5),
    "signature": ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, in_channels):\n"
                  "        super().__init__()\n", "takes no num_classes", 4),
    "forward": ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, num_classes, in_channels):\n"
                "        super().__init__()\n        self.fc = nn.Linear(7, num_classes)\n\n"
                "    def forward(self, x):\n        return self.fc(x)\n", "forward pass on a dummy", 10),
    "shape": ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self, num_classes, in_channels):\n"
              "        super().__init__()\n\n    def forward(self, x):\n        return x\n", "expected logits", 4),
    "training": ("import sys\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n"
                 "    def __init__(self, num_classes, in_channels):\n        super().__init__()\n"
                 "        self.fc = nn.Linear(in_channels, num_classes)\n\n    def forward(self, x):\n"
                 "        if self.training:\n            sys.exit(3)\n        return self.fc(x.mean(dim=(2, 3)))\n",
                 "train-mode forward pass on a dummy 3x3x", 12),
}


@pytest.mark.parametrize("command", ["search", "train"])
@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_broken_net_is_one_line_naming_file_and_line(fault, command, tmp_path, monkeypatch, capsys):
    import ray

    from search.cli import main
    from tests.conftest import make_cifar_pickles

    source, named, line = BROKEN[fault]
    (tmp_path / "bad.py").write_text(source)
    data = make_cifar_pickles(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    args = ["--arch", "bad.py:Net", "--data-dir", str(data), "--set", "val_size=20", "--set", "latency_batch=0"]
    if command == "search":
        args += ["--num-samples", "1", "--max-epochs", "1", "--storage", str(tmp_path / "r"), "--name", "x"]
    else:
        args += ["--set", "epochs=1"]
    assert main([command, *args]) == 2
    one_line_error(capsys, "bad.py:Net", named, f"{tmp_path / 'bad.py'}:{line}")
    assert not ray.is_initialized() and not (tmp_path / "r" / "x").exists()  # refused before Ray or a folder


@pytest.mark.parametrize("ref,named", [
    ("nowhere.py:Net", "no such file"),
    ("nets.py:Nett", "has no 'Nett'; it defines: FileNet"),
    ("no_such_pkg.nets:build", "no module named 'no_such_pkg'"),
    ("no_such_net", "known: ghasemi_net"),
    ("nets.py:simple_cnn", "taken by the repo's own net"),
])
def test_bad_reference_is_one_line(ref, named, nets, monkeypatch, capsys):
    from search.cli import main

    (nets["file"].parent / "nets.py").write_text(nets["file"].read_text() + "\nsimple_cnn = FileNet\n")
    monkeypatch.chdir(nets["file"].parent)
    assert main(["search", "--arch", ref, "--storage", str(nets["file"].parent / "r")]) == 2
    one_line_error(capsys, ref, named)


def test_error_inside_the_users_forward_names_the_users_frame_not_torchs(tmp_path, monkeypatch):
    """The frame named is the user's line that called into torch, not torch's own."""
    from trainables.models import create_model, resolve_arch
    from trainables.plugins import PluginError

    (tmp_path / "deep.py").write_text(textwrap.dedent('''
        import torch
        import torch.nn as nn


        class Deep(nn.Module):
            def __init__(self, num_classes, in_channels):
                super().__init__()

            def forward(self, x):
                return torch.cat([x, torch.zeros(3, 3)])
    '''))
    monkeypatch.chdir(tmp_path)
    resolve_arch("deep.py:Deep")
    with pytest.raises(PluginError, match=rf"at {tmp_path / 'deep.py'}:11\)$"):
        create_model("Deep")


FAULTY_NETS = textwrap.dedent('''
    import torch
    import torch.nn as nn


    class Head(nn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.fc = nn.Linear(in_channels, num_classes)


    class NoParams(nn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.n = num_classes

        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None].expand(-1, self.n) * 0


    class NoGrad(Head):
        def forward(self, x):
            return torch.zeros(x.shape[0], self.fc.out_features)


    class IntOut(Head):
        def forward(self, x):
            return self.fc(x.mean(dim=(2, 3))).long()


    class TrainOnly(Head):
        def forward(self, x):
            if self.training:
                raise RuntimeError("boom in training mode")
            return self.fc(x.mean(dim=(2, 3)))


    class Batch2(nn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.fc = nn.Linear(in_channels * 32 * 32, num_classes)

        def forward(self, x):
            return self.fc(x.reshape(2, -1))


    class BatchNormDropout(nn.Module):
        def __init__(self, num_classes=10, in_channels=3):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, num_classes))

        def forward(self, x):
            return self.body(x)
''')


@pytest.mark.parametrize("name, named", [
    ("NoParams", "NoParams(...) has no trainable parameters"),
    ("NoGrad", "train-mode forward pass on a dummy 3x3x32x32 batch returned logits that do not require grad"),
    ("IntOut", "returned torch.int64 of shape (3, 10); expected logits of shape (3, 10) for num_classes=10, floating"),
    ("TrainOnly", "train-mode forward pass on a dummy 3x3x32x32 batch raised RuntimeError: boom in training mode"),
    ("Batch2", "eval-mode forward pass on a dummy 3x3x32x32 batch raised RuntimeError: mat1 and mat2"),
])
def test_a_net_that_cannot_train_is_refused_when_built(name, named, tmp_path, monkeypatch):
    """Each passed the old eval-mode forward on a batch of 2 and failed in the trial's first step with a traceback."""
    from trainables.models import create_model, resolve_arch
    from trainables.plugins import PluginError

    (tmp_path / "faulty_nets.py").write_text(FAULTY_NETS)
    monkeypatch.chdir(tmp_path)
    resolve_arch(f"faulty_nets.py:{name}")
    with pytest.raises(PluginError) as e:
        create_model(name)
    assert str(e.value).startswith(f"--arch 'faulty_nets.py:{name}': ") and named in str(e.value), str(e.value)


def test_the_check_of_a_users_net_leaves_the_model_and_the_rng_as_they_were(tmp_path, monkeypatch):
    """The train-mode forward and backward touch neither weights, BatchNorm statistics, gradients nor the mode; nor
    the RNG the trial was seeded with (dropout draws from it)."""
    from trainables.models.registry import check_forward, resolve_arch

    (tmp_path / "faulty_nets.py").write_text(FAULTY_NETS)
    monkeypatch.chdir(tmp_path)
    spec = resolve_arch("faulty_nets.py:BatchNormDropout")
    torch.manual_seed(0)
    model = spec.builder(num_classes=10, in_channels=3).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    check_forward(spec, model, 10, 3, 32)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
