"""cluster.yaml passes Ray's own validation; a real search on a real multi-node Ray cluster (loopback), of users' nets
shipped to every node, with a worker node removed mid-trial (fault 3); node-local storage refused in cluster mode
(fault 8).

The cluster: a head that advertises no CPU (like cluster.yaml's) and two worker nodes of one CPU each, each node
its own raylet and object store (``ray.cluster_utils.Cluster``, all on this machine). The search is a real
``cifar-tune search --address HOST:PORT`` subprocess. On loopback every node has the same IP, so a trial's node is
told by its worker process: result.json records the pid, Ray's actor table maps that pid to its node id.
"""
from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import pytest
import yaml

from tests.searchrun import (REPO, checkpoints, epochs_of, free_port, kill_session, report, results, saved_trials,
                             start_cli, trial_dirs, wait_for)

MAX_EPOCHS = 4
HOLD = 2  # epochs a trial's first attempt trains before it waits (tests/fault_driver.py)


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


def running_trials(c) -> dict[str, tuple[str, int]]:
    """node id -> (trial folder name, worker pid), for the trial workers alive now. Tune runs each trial in its own
    working directory named after the trial, and every node lives on this machine: /proc/<pid>/cwd says which."""
    out = {}
    for a in actors(c):
        if a["State"] == "ALIVE" and a["Pid"]:
            try:
                out[a["Address"]["NodeID"]] = (Path(os.readlink(f"/proc/{a['Pid']}/cwd")).name, a["Pid"])
            except OSError:
                pass
    return out


def gone(pid: int) -> bool:
    """The process ``pid`` has ended (a zombie not yet reaped has too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def node_of_pid(c) -> dict[int, str]:
    """Every actor the cluster ever ran (dead ones too): worker pid -> node id."""
    return {a["Pid"]: a["Address"]["NodeID"] for a in actors(c) if a["Pid"]}


@pytest.fixture(scope="module")
def multinode(cluster, cifar, cifar_path, tmp_path_factory):
    """One search on the two worker nodes, of two nets of the user's own (tests/test_user_net.py: one from a .py
    file, one from an installed package's entry point), one trial each. Each trial's first attempt waits after
    epoch HOLD (its checkpoint saved) until released (``hold_after_epoch`` + ``release_file`` in
    tests/fault_driver.py), so both are mid-run on their own node at once however slowly the nodes start; then
    one node is removed, the trials are released, and the removed node's trial must go on elsewhere from its
    checkpoint."""
    from tests.test_user_net import search_args, write_user_nets

    c = cluster["cluster"]
    tmp = tmp_path_factory.mktemp("multinode")
    nets = write_user_nets(tmp / "user")
    storage = tmp / "results"
    exp = storage / "multi"
    release = tmp / "release"
    args = search_args(nets, cifar_path, storage, "multi")
    args[args.index("--num-samples") + 1] = 1
    args[args.index("--max-epochs") + 1] = MAX_EPOCHS
    args += ["--address", c.address, "--storage-is-shared", "--scheduler", "none", "--max-failures", 2]
    log = tmp / "search.log"
    # The worker nodes have neither the net file's folder nor the package on their path (only this driver has).
    proc = start_cli(args, log, faults={"hold_after_epoch": HOLD, "release_file": str(release)},
                     PYTHONPATH=str(nets["site"]))
    try:
        workers = {w.node_id: w for w in cluster["workers"]}
        seen: dict[str, set] = {}  # node -> trials seen running there

        def held_on_both_workers():
            """{worker node: (trial folder, worker pid)} once a trial waits on each worker node with HOLD epochs
            checkpointed (checkpoints reach the storage as they are written; result.json only every few seconds)."""
            running = running_trials(c)
            for node, (trial, _) in running.items():
                seen.setdefault(node, set()).add(trial)
            held = {node: run for node, run in running.items() if node in workers and exp.exists()
                    and len(checkpoints(exp / run[0])) >= HOLD}
            return held if set(held) == set(workers) else None

        held = wait_for(held_on_both_workers, 600, proc, log, "a trial waiting after its checkpoint on each worker")
        victim = next(iter(held))
        placement_before = node_of_pid(c)
        c.remove_node(workers[victim], allow_graceful=False)  # SIGKILL its raylet and object store ...
        # ... and its trial's worker, at once, as the loss of that machine would: left to notice its raylet gone, it
        # could run on for a moment, and released in that moment it would finish its epochs there.
        try:
            os.kill(held[victim][1], signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda: gone(held[victim][1]), 120, proc, log, "the removed node's trial worker to die")
        release.write_text("")
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            kill_session(proc)
    assert proc.returncode == 0, log.read_text()[-4000:]
    return {"exp": exp, "log": log.read_text(), "victim": victim, "victim_trial": held[victim][0], "nets": nets,
            "head": cluster["head"], "workers": [w.node_id for w in cluster["workers"]], "trials": report(exp),
            "nodes": {**placement_before, **node_of_pid(c)}, "saved": saved_trials(exp),
            "seen_before_removal": {n: sorted(t) for n, t in seen.items()}}


@pytest.mark.cluster
def test_user_nets_reach_every_node(multinode):
    """Issue 20: the worker nodes have neither the net file's folder nor the package on their path: Ray's runtime
    environment ships both, and every import on a worker is of a shipped copy."""
    from tests.test_user_net import check_user_net_experiment, loads

    nets, node = multinode["nets"], multinode["nodes"]
    check_user_net_experiment(multinode["exp"], nets, samples=1)
    on_workers = [(kind, node[pid], path) for kind, pid, path in loads(nets["log"]) if pid in node]
    assert {kind for kind, _, _ in on_workers} == {"file", "package"}, loads(nets["log"])
    assert {n for _, n, _ in on_workers} <= set(multinode["workers"])
    assert all("runtime_resources" in path for _, _, path in on_workers), on_workers


def placement(run) -> dict[str, list[str]]:
    """trial_id -> the node of each of its result lines, in order."""
    out = {}
    for tid, d in trial_dirs(run["exp"]).items():
        out[tid] = [run["nodes"].get(r["pid"], f"pid {r['pid']}?") for r in results(d)]
    return out


@pytest.mark.cluster
def test_search_on_a_multi_node_cluster_uses_several_nodes(multinode):
    trials = multinode["trials"]
    assert len(trials) == 2 and {t["status"] for t in trials} == {"completed"}
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
