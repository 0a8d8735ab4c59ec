"""cluster.yaml passes Ray's own validation; a real search on a real multi-node Ray cluster (loopback); a worker node
removed mid-trial (fault 3); node-local storage refused in cluster mode (fault 8); users' nets shipped to every node.

The cluster: a head that advertises no CPU (like cluster.yaml's) and two worker nodes of one CPU each, each node
its own raylet and object store (``ray.cluster_utils.Cluster``, all on this machine). The search is a real
``cifar-tune search --address HOST:PORT`` subprocess. On loopback every node has the same IP, so a trial's node is
told by its worker process: result.json records the pid, Ray's actor table maps that pid to its node id.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from tests.searchrun import (REPO, checkpoints, epochs_of, free_port, kill_session, report, results, run_cli,
                             saved_trials, start_cli, trial_dirs, wait_for)

MAX_EPOCHS = 8


# --------------------------------------------------------------------------------------------- cluster.yaml

def validated(config: dict) -> dict:
    """What `ray up` does to a config before it touches a cloud: fill in defaults, then Ray's validator."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(config)  # the file as written must already be schema-valid ...
    prepared = prepare_config(copy.deepcopy(config))  # ... and so must what the launcher makes of it
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation():
    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cfg = validated(raw)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0  # the head runs no trial
    assert any("--num-cpus=0" in c for c in cfg["head_start_ray_commands"])
    gpu = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert gpu and all(t["resources"].get("GPU", 0) >= 1 and 0 <= t["min_workers"] <= t["max_workers"] for t in gpu)
    assert sum(t["min_workers"] for t in gpu) <= cfg["max_workers"]
    commands = " ".join(cfg["setup_commands"])
    assert "pip install" in commands and "cifar-tune" in commands  # cifar-tune on every node
    assert "cifar-tune data" in commands  # the data on every node
    assert "mount -t nfs4" in commands  # shared results: a filesystem `search --address` accepts
    assert cfg["provider"]["type"] == "aws"


@pytest.mark.parametrize("breakage", ["unknown_key", "negative_cpu", "no_node_config", "head_not_a_type"])
def test_rays_validator_does_catch_a_broken_cluster_yaml(breakage):
    from jsonschema import ValidationError

    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    if breakage == "unknown_key":
        cfg["max_worker"] = 3
    elif breakage == "negative_cpu":
        cfg["available_node_types"]["gpu_worker"]["resources"]["CPU"] = -1
    elif breakage == "no_node_config":
        del cfg["available_node_types"]["gpu_worker"]["node_config"]
    else:
        cfg["head_node_type"] = "cpu_head"
    with pytest.raises((ValidationError, ValueError)):
        validated(cfg)


# --------------------------------------------------------------------------------------------- a real cluster

@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    node = {"object_store_memory": 300 * 2**20, "include_dashboard": False}
    c = Cluster(initialize_head=True, shutdown_at_exit=True,
                head_node_args={"num_cpus": 0, "gcs_server_port": free_port(), **node})
    try:
        workers = [c.add_node(num_cpus=1, **node) for _ in range(2)]
        c.wait_for_nodes()
        yield {"cluster": c, "head": c.head_node.node_id, "workers": workers}
    finally:
        c.shutdown()


def actors(c) -> list[dict]:
    return list(c.global_state.actor_table(None).values())


def running_trials(c) -> dict[str, str]:
    """node id -> trial folder name, for the trial workers alive now. Tune runs each trial in its own working
    directory named after the trial, and every node lives on this machine: /proc/<pid>/cwd says which trial."""
    out = {}
    for a in actors(c):
        if a["State"] == "ALIVE" and a["Pid"]:
            try:
                out[a["Address"]["NodeID"]] = Path(os.readlink(f"/proc/{a['Pid']}/cwd")).name
            except OSError:
                pass
    return out


def node_of_pid(c) -> dict[int, str]:
    """Every actor the cluster ever ran (dead ones too): worker pid -> node id."""
    return {a["Pid"]: a["Address"]["NodeID"] for a in actors(c) if a["Pid"]}


@pytest.mark.cluster
def test_user_nets_reach_every_node(cluster, cifar, cifar_path, tmp_path):
    """Issue 20: a net from a .py file and one from an installed package's entry point, 2 trials each. The worker
    nodes have neither the file's folder nor the package on their path: Ray's runtime environment ships both, and
    every import on a worker is of a shipped copy. (Runs before the multinode tests, which remove a node.)"""
    from tests.test_user_net import check_user_net_experiment, loads, search_args, write_user_nets

    c = cluster["cluster"]
    nets = write_user_nets(tmp_path)
    out = run_cli([*search_args(nets, cifar_path, tmp_path / "r", "mine"), "--address", c.address,
                   "--storage-is-shared"], timeout=300, PYTHONPATH=str(nets["site"]))
    assert out.returncode == 0, out.stdout[-3000:]
    check_user_net_experiment(tmp_path / "r" / "mine", nets)
    node = node_of_pid(c)
    on_workers = [(kind, node[pid], path) for kind, pid, path in loads(nets["log"]) if pid in node]
    assert {kind for kind, _, _ in on_workers} == {"file", "package"}, loads(nets["log"])
    assert {n for _, n, _ in on_workers} <= {w.node_id for w in cluster["workers"]}
    assert all("runtime_resources" in path for _, _, path in on_workers), on_workers


@pytest.fixture(scope="module")
def multinode(cluster, cifar, cifar_path, tmp_path_factory):
    """Four trials on two worker nodes; once both nodes have run trials, a node is removed while a trial is
    mid-run on it."""
    c = cluster["cluster"]
    tmp = tmp_path_factory.mktemp("multinode")
    storage = tmp / "results"
    exp = storage / "multi"
    args = ["search", "--address", c.address, "--storage", storage, "--storage-is-shared", "--name", "multi",
            "--arch", "origin_net,simple_cnn", "--num-samples", 2, "--max-epochs", MAX_EPOCHS, "--scheduler", "none",
            "--data-dir", cifar_path, "--set", "subset=2000", "--set", "val_size=300", "--set", "batch_size=100",
            "--max-failures", 2]
    log = tmp / "search.log"
    proc = start_cli(args, log)
    try:
        workers = {w.node_id: w for w in cluster["workers"]}
        seen: dict[str, set] = {}  # node -> trials seen running there

        def both_nodes_used_and_one_mid_run():
            """Once trials have run on both worker nodes: (node, trial folder) of a trial running on a worker
            with >= 2 epochs behind it and >= 2 ahead. Checkpoints reach the storage as they are written
            (result.json only every few seconds)."""
            running = running_trials(c)
            for node, trial in running.items():
                seen.setdefault(node, set()).add(trial)
            if not set(workers) <= set(seen):
                return None
            for node, trial in running.items():
                done = [int(p.name.split("_")[1]) for p in checkpoints(exp / trial)] if exp.exists() else []
                if node in workers and done and 1 <= max(done) <= MAX_EPOCHS - 3:
                    return workers[node], trial
            return None

        victim, trial = wait_for(both_nodes_used_and_one_mid_run, 300, proc, log,
                                 "trials on both workers, one of them mid-run")
        placement_before = node_of_pid(c)
        c.remove_node(victim, allow_graceful=False)  # SIGKILL its raylet, object store and trial workers
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            kill_session(proc)
    assert proc.returncode == 0, log.read_text()[-4000:]
    return {"exp": exp, "log": log.read_text(), "victim": victim.node_id, "victim_trial": trial,
            "head": cluster["head"], "workers": [w.node_id for w in cluster["workers"]], "trials": report(exp),
            "nodes": {**placement_before, **node_of_pid(c)}, "saved": saved_trials(exp),
            "seen_before_removal": {n: sorted(t) for n, t in seen.items()}}


def placement(run) -> dict[str, list[str]]:
    """trial_id -> the node of each of its result lines, in order."""
    out = {}
    for tid, d in trial_dirs(run["exp"]).items():
        out[tid] = [run["nodes"].get(r["pid"], f"pid {r['pid']}?") for r in results(d)]
    return out


@pytest.mark.cluster
def test_search_on_a_multi_node_cluster_uses_several_nodes(multinode):
    trials = multinode["trials"]
    assert len(trials) == 4 and {t["status"] for t in trials} == {"completed"}
    nodes = placement(multinode)
    used = {n for per_trial in nodes.values() for n in per_trial}
    assert used <= set(multinode["workers"]), f"a trial ran outside the worker nodes: {used}"
    assert multinode["head"] not in used  # the head advertises no CPU: no trial there
    assert len(used) == 2, nodes  # both worker nodes ran trials ...
    assert set(multinode["seen_before_removal"]) == set(multinode["workers"])  # ... already before the removal
    role = {multinode["head"]: "head", **{w: f"worker{i + 1}" for i, w in enumerate(multinode["workers"])}}
    for tid, per_trial in sorted(nodes.items()):  # shown with -s or -rP: the node of every epoch of every trial
        rows = results(trial_dirs(multinode["exp"])[tid])
        print(f"placement {tid}: " + " ".join(f"e{r['epoch']}@{role.get(n, n[:8])}" for r, n in zip(rows, per_trial))
              + ("  (removed node: " + role[multinode["victim"]] + ")" if multinode["victim"] in per_trial else ""))


@pytest.mark.cluster
def test_fault3_worker_node_removed_trial_continues_elsewhere_from_checkpoint(multinode):
    nodes = placement(multinode)
    victim = multinode["victim"]
    hit = [tid for tid, per_trial in nodes.items() if victim in per_trial and per_trial[-1] != victim]
    assert multinode["victim_trial"].rsplit("_", 1)[1] in hit, f"the trial on the removed node did not move: {nodes}"
    for tid in hit:
        rows = results(trial_dirs(multinode["exp"])[tid])
        moved = next(i for i, n in enumerate(nodes[tid]) if i and n != victim and nodes[tid][i - 1] == victim)
        assert victim not in nodes[tid][moved:]
        # It went on from its last checkpoint: every epoch once, the first on the new node right after the
        # last on the removed one, and Tune's counter since the restore starts again there.
        assert epochs_of(rows) == list(range(1, MAX_EPOCHS + 1))
        assert rows[moved]["iterations_since_restore"] == 1 and rows[moved]["epoch"] == rows[moved - 1]["epoch"] + 1
        assert multinode["saved"][tid]["num_failures"] >= 1
        t = next(t for t in multinode["trials"] if t["trial_id"] == tid)
        assert t["status"] == "completed" and [h["epoch"] for h in t["history"]] == list(range(1, MAX_EPOCHS + 1))


@pytest.mark.cluster
def test_fault8_cluster_mode_refuses_node_local_storage(cluster, tmp_path, cifar_path):
    c = cluster["cluster"]
    proc = start_cli(["search", "--address", c.address, "--storage", tmp_path / "local", "--name", "x",
                      "--arch", "origin_net", "--data-dir", cifar_path], tmp_path / "log")
    assert proc.wait(timeout=120) == 2
    out = (tmp_path / "log").read_text()
    assert "node-local" in out and "--storage-is-shared" in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "local").exists()
    # Refused at start-up, before connecting: that process never joined the cluster as a driver.
    assert proc.pid not in [j["DriverPid"] for j in c.global_state.job_table()]


@pytest.mark.cluster
def test_search_without_address_does_not_join_a_cluster_running_here(cluster, tmp_path, cifar_path):
    """Ray's bare ray.init() joins the cluster `ray start` (or this test) left on the machine; cifar-tune must not:
    that cluster's nodes would write to a --storage nobody checked was shared."""
    c = cluster["cluster"]
    proc = start_cli(["search", "--arch", "origin_net", "--num-samples", 1, "--max-epochs", 1,
                      "--data-dir", cifar_path, "--set", "subset=200", "--set", "val_size=100",
                      "--storage", tmp_path / "r", "--name", "local"], tmp_path / "log")
    assert proc.wait(timeout=600) == 0, (tmp_path / "log").read_text()[-3000:]
    assert proc.pid not in [j["DriverPid"] for j in c.global_state.job_table()]
    assert [t["status"] for t in report(tmp_path / "r" / "local")] == ["completed"]
