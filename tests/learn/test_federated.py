"""MetaLoc on Flower (extra xloc[federated]): 3-client simulations of MAML-TS and MAML-DG and a loopback
multi-process run give the centralised meta-parameters, and no raw fingerprint leaves a client."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import skip_or_fail
from xloc.data.fingerprints import FingerprintSet
from xloc.data.storage import save_fingerprints
from xloc.errors import DataValidationError, NotFittedError
from xloc.learn import federated
from xloc.learn.federated import FederatedRun, read_audit
from xloc.learn.federated.audit import leaks
from xloc.learn.federated.protocol import to_arrays
from xloc.learn.metaloc import MetaLoc
from xloc.learn.rss_tasks import RadioMap, support_features
from xloc.sim.pathloss import PathLossConfig, simulate_pathloss_environment

HYPER = {"iterations": 3, "meta_batch": 2, "hidden": (16, 16), "val_every": 100, "n_support": 8, "n_query": 8,
         "val_tasks": 4, "seed": 3}
ENVS = ["env0", "env1", "env2"]
PARAM_NAMES = {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.4.weight", "net.4.bias"}


def _need_flwr() -> None:
    try:
        federated.require_flwr()
    except DataValidationError:
        skip_or_fail("federated", "Flower is not installed (pip install 'xloc[federated]')")


@pytest.fixture(scope="module")
def rss_file(tmp_path_factory):
    refs = [simulate_pathloss_environment(PathLossConfig(family=fam, n_aps=8, room_size_m=(10.0, 10.0),
                                                         grid_spacing_m=2.0, n_test_points=10), seed=i,
                                          name=f"env{i}")[0] for i, fam in enumerate("abc")]
    path = tmp_path_factory.mktemp("fed") / "rss.h5"
    save_fingerprints(path, {"train": FingerprintSet(refs)})
    return path, FingerprintSet(refs)


def _assert_same_params(central: MetaLoc, folder) -> None:
    fed = MetaLoc.load(folder)
    assert set(fed.params_by_group_) == set(central.params_by_group_)
    for group, params in central.params_by_group_.items():
        for k, v in params.items():
            torch.testing.assert_close(fed.params_by_group_[group][k], v, rtol=0, atol=1e-6)
    assert not torch.equal(central.params_by_group_[next(iter(central.params_by_group_))]["net.0.weight"],
                           MetaLoc(central.config.paradigm, **HYPER)._new_model().net[0].weight), \
        "training moved nothing: the equality would be vacuous"


def _assert_no_raw_data(audit_dir, expected_types: set[str]) -> None:
    entries = read_audit(audit_dir)
    assert {e["environment"] for e in entries} == set(ENVS)
    assert {e["type"] for e in entries} == expected_types
    for e in entries:
        assert e["leaks"] == [], e
        for record in e["out"]:
            for name, shape in record.get("arrays", {}).items():
                # only meta-parameters and their gradients leave a client
                assert name.split("/", 1)[-1] in PARAM_NAMES, (e["type"], name, shape)


def test_run_settings_are_validated():
    with pytest.raises(DataValidationError, match="federated paradigm"):
        FederatedRun("maml", ENVS, "x.h5", "out")
    with pytest.raises(DataValidationError, match="two client environments"):
        FederatedRun("maml-dg", ["env0"], "x.h5", "out")
    with pytest.raises(DataValidationError, match="first-order"):
        FederatedRun("maml-dg", ENVS, "x.h5", "out", {"first_order": False})


def test_leak_check_finds_a_raw_fingerprint(rss_file):
    _need_flwr()
    from flwr.app import RecordDict

    _, fs = rss_file
    env = fs["env0"]

    def check(values) -> list[str]:
        return leaks(RecordDict(to_arrays({"net.0.bias": torch.as_tensor(values, dtype=torch.float32)})),
                     env)

    row = np.asarray(env.measurements[3], dtype=np.float64)
    assert check(np.r_[0.0, 0.0, row]) == ["arrays/net.0.bias holds raw data (fingerprint values, up to scale and "
                                           "offset, at 2)"]
    # a planted rescaled, shifted or negated row is caught as well (what a model's input normalisation does)
    assert len(check(np.r_[np.zeros(5), (row + 105.0) / 105.0])) == 1
    assert len(check(np.r_[-0.5 * row + 3.0, np.ones(3)])) == 1
    positions = np.asarray(env.positions_m[5:8, :2], dtype=np.float64)
    assert check(positions.ravel()) == ["arrays/net.0.bias holds raw data (positions, at 0)"]
    # two positions anywhere in the file, not consecutive, off by less than the tolerance
    pair = np.asarray(env.positions_m[[9, 2], :2], dtype=np.float64).ravel() + 0.004
    assert check(np.r_[0.1, pair, -0.2]) == ["arrays/net.0.bias holds raw data (positions, at 1)"]
    # what a client legitimately sends: weights, their gradients -- none flagged
    rng = np.random.default_rng(0)
    for values in (rng.normal(0, 0.1, 20_000), rng.normal(0, 1.0, 20_000), np.zeros(64), np.arange(50.0)):
        assert check(values) == [], values[:4]


def test_leak_check_finds_a_run_of_columns_of_a_wide_fingerprint():
    _need_flwr()
    from flwr.app import RecordDict

    env, _ = simulate_pathloss_environment(PathLossConfig(family="a", n_aps=60, n_test_points=10), seed=5)
    row = np.asarray(env.measurements[7], dtype=np.float64)
    heard = np.where(np.isnan(row), -105.0, row)
    for lo in (0, 13, 40):
        run = heard[lo:lo + 15]  # any 15 consecutive columns hold an aligned block of 8
        if np.unique(run).size < 12:
            continue
        values = np.r_[np.full(3, 0.01), 2.0 * run - 7.0]
        found = leaks(RecordDict(to_arrays({"w": torch.as_tensor(values, dtype=torch.float32)})), env)
        assert len(found) == 1 and "fingerprint values" in found[0], (lo, found)


def test_leak_check_does_not_flag_relu_gradients_against_sparse_fingerprints():
    """A real building hears a quarter of its APs at a point; a ReLU network's gradient rows are mostly zeros with
    a few positive values -- they once matched mostly unheard blocks (28 false findings on SODIndoorLoc)."""
    _need_flwr()
    from flwr.app import RecordDict

    from xloc.data.environment import EnvironmentMeta
    from xloc.data.fingerprints import Fingerprints

    rng = np.random.default_rng(2)
    n, n_aps = 2000, 160
    rss = np.where(rng.random((n, n_aps)) < 0.25, rng.uniform(-95, -40, (n, n_aps)).round(), np.nan)
    env = Fingerprints(EnvironmentMeta("sparse", "rss", tuple(f"AP{i}" for i in range(n_aps))),
                       rss.astype(np.float32), rng.uniform(0, 50, (n, 2)), np.arange(n))
    hidden = np.maximum(rng.normal(size=(2000, 64)), 0.0) * (rng.random((2000, 64)) < 0.3)
    gradients = (rng.normal(size=(2000, 1)) * hidden).ravel()
    assert leaks(RecordDict(to_arrays({"g": torch.as_tensor(gradients, dtype=torch.float32)})), env) == []
    # while a row of it, normalised as a model input, is still caught
    row = np.where(np.isnan(rss[11]), -105.0, rss[11])
    found = leaks(RecordDict(to_arrays({"x": torch.as_tensor((row + 105) / 105, dtype=torch.float32)})),
                  env)
    assert len(found) == 1 and "fingerprint values" in found[0]


def test_simulation_maml_ts_equals_centralised_and_sends_only_scalars_back(rss_file, tmp_path):
    _need_flwr()
    path, fs = rss_file
    run = FederatedRun("maml-ts", ENVS, str(path), str(tmp_path / "ts"), HYPER, support=str(path),
                       support_env="env1", audit_dir=str(tmp_path / "ts" / "audit"))
    result = federated.run_simulation_mode(run)
    central = MetaLoc("maml-ts", **HYPER).fit(fs)
    _assert_same_params(central, tmp_path / "ts" / "model")
    radio_map = RadioMap.from_fingerprints(fs["env1"], central.config.floor_dbm)
    feats, _ = support_features(fs["env1"], radio_map, central.config.k_neighbors, central.config.floor_dbm)
    closest, mmds = central.select_group(feats.features)
    assert result["closest"] == closest
    assert result["mmd2"] == pytest.approx(mmds, abs=1e-9)
    _assert_no_raw_data(run.audit_dir, {"query.hello", "train.ts", "evaluate.val", "query.mmd"})
    mmd_replies = [e for e in read_audit(run.audit_dir) if e["type"] == "query.mmd"]
    assert all(e["out"] == [{"record": "metrics", "type": "MetricRecord", "keys": ["mmd2"]}] for e in mmd_replies)
    # the references stayed with the clients: the server's model adapts the set the clients' MMDs chose
    fed_model = MetaLoc.load(tmp_path / "ts" / "model")
    with pytest.raises(NotFittedError, match="pass group"):
        fed_model.adapt(fs["env1"])
    adapted = fed_model.adapt(fs["env1"], group=result["closest"])
    assert adapted.group == closest
    assert adapted.predict(fs["env1"].measurements).shape == (len(fs["env1"]), 2)


def test_simulation_maml_dg_equals_centralised(rss_file, tmp_path):
    _need_flwr()
    path, fs = rss_file
    run = FederatedRun("maml-dg", ENVS, str(path), str(tmp_path / "dg"), HYPER, audit_dir=str(tmp_path / "audit"))
    result = federated.run_simulation_mode(run)
    _assert_same_params(MetaLoc("maml-dg", **HYPER).fit(fs), tmp_path / "dg" / "model")
    # per round: theta to client I, theta' (+ grad F) back, theta' to client II, its gradient back
    assert result["messages"] >= 4 * HYPER["iterations"]
    _assert_no_raw_data(run.audit_dir, {"query.hello", "train.dg_inner", "train.dg_outer", "evaluate.val"})


def test_simulation_maml_dg_with_differential_privacy_sends_only_noisy_clipped_gradients(rss_file, tmp_path):
    _need_flwr()
    path, fs = rss_file
    run = FederatedRun("maml-dg", ENVS, str(path), str(tmp_path / "dp"), HYPER, audit_dir=str(tmp_path / "audit"),
                       dp_noise_multiplier=1.0, dp_clip=0.5)
    result = federated.run_simulation_mode(run)
    entries = read_audit(run.audit_dir)
    # no loss values and no validation round leave the clients; only the gradients, noised
    assert {e["type"] for e in entries} == {"query.hello", "train.dg_inner", "train.dg_outer"}
    assert all(r["record"] != "metrics" for e in entries if e["type"].startswith("train") for r in e["out"])
    dp = result["dp"]
    assert sum(dp["releases"].values()) == 2 * HYPER["iterations"]
    assert all(0 < dp["epsilon"][e] < float("inf") for e in ENVS if dp["releases"][e])
    noisy = MetaLoc.load(tmp_path / "dp" / "model")
    central = MetaLoc("maml-dg", **HYPER).fit(fs)
    assert any(not torch.equal(noisy.params_by_group_["all"][k], central.params_by_group_["all"][k])
               for k in central.params_by_group_["all"])
    with pytest.raises(DataValidationError, match="MAML-DG"):
        FederatedRun("maml-ts", ENVS, str(path), "out", dp_noise_multiplier=1.0)


def test_loopback_processes_maml_dg_equal_centralised(rss_file, tmp_path):
    """A SuperLink and three SuperNodes as real processes on 127.0.0.1, each node told only its environment and
    served by one long-lived ClientApp process (xloc.learn.federated.worker) behind a short-poll SuperNode."""
    _need_flwr()
    path, fs = rss_file
    # one meta-iteration: Flower's HTTP path still takes seconds per message here; the protocol is the same at any
    # iteration count (the simulation tests run 3)
    hyper = {**HYPER, "iterations": 1}
    run = FederatedRun("maml-dg", ENVS, str(path), str(tmp_path / "loop"), hyper, audit_dir=str(tmp_path / "audit"))
    federated.run_loopback(run, port=18700)
    _assert_same_params(MetaLoc("maml-dg", **hyper).fit(fs), tmp_path / "loop" / "model")
    entries = read_audit(run.audit_dir)
    pids = {e["environment"]: set() for e in entries}
    for e in entries:
        pids[e["environment"]].add(e["pid"])
    # the clients ran in processes of their own, one per client for all its messages
    assert all(len(p) == 1 for p in pids.values()) and len(set.union(*pids.values())) == len(ENVS), pids
    _assert_no_raw_data(run.audit_dir, {"query.hello", "train.dg_inner", "train.dg_outer", "evaluate.val"})


class _Grid:
    """A stand-in for Flower's Grid: nodes 1-3 hold env0-env2; the nodes in ``silent`` never answer."""

    def __init__(self, silent: set[int], slow_s: dict[int, float] | None = None) -> None:
        self.silent, self.sent, self.slow_s, self.pushed_at = silent, {}, slow_s or {}, {}

    def get_node_ids(self):
        return [1, 2, 3]

    def push_messages(self, messages):
        ids = []
        import time

        for m in messages:
            ids.append(f"m{len(self.sent)}")
            self.sent[ids[-1]] = m
            self.pushed_at[ids[-1]] = time.monotonic()
        return ids

    def pull_messages(self, ids):
        import time
        from types import SimpleNamespace

        from flwr.app import ConfigRecord

        out = []
        for i in list(ids):
            node = self.sent[i].metadata.dst_node_id
            late = time.monotonic() - self.pushed_at[i] < self.slow_s.get(node, 0.0)
            if node not in self.silent and not late:
                out.append(SimpleNamespace(
                    metadata=SimpleNamespace(reply_to_message_id=i, src_node_id=node), has_error=lambda: False,
                    content={"config": ConfigRecord({"environment": f"env{node - 1}"})}))
        return out


def test_a_silent_or_slow_client_is_named_and_never_hangs_the_server(monkeypatch):
    _need_flwr()
    from flwr.supercore.task_identity import TaskIdentity

    from xloc.learn.federated.server import ClientUnavailable, _Federation

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)  # Flower messages are made inside a run (by node 0: the server)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)

    run = FederatedRun("maml-dg", ENVS, "x.h5", "out", reply_timeout_s=0.3)
    grid = _Grid(silent=set())
    fed = _Federation(grid, run)
    assert fed.node_of == {"env0": 1, "env1": 2, "env2": 3}
    grid.silent = {3}
    assert set(fed.ask([(1, "query.hello", {}, None), (2, "query.hello", {}, None)])) == {1, 2}
    with pytest.raises(DataValidationError, match=r"no reply within 0.3 s from client\(s\) env2"):
        fed.ask([(2, "query.hello", {}, None), (3, "query.hello", {}, None)])
    with pytest.raises(DataValidationError, match="reply_timeout_s"):
        FederatedRun("maml-dg", ENVS, "x.h5", "out", reply_timeout_s=0)
    # a slow client is waited for within the timeout, and counts as down beyond it
    grid.silent, grid.slow_s = set(), {2: 0.15}
    assert set(fed.ask([(1, "query.hello", {}, None), (2, "query.hello", {}, None)])) == {1, 2}
    grid.slow_s = {2: 1.0}
    with pytest.raises(ClientUnavailable, match=r"from client\(s\) env1") as caught:
        fed.ask([(1, "query.hello", {}, None), (2, "query.hello", {}, None)])
    assert caught.value.environments == ["env1"]


def test_loopback_maml_dg_survives_a_client_killed_mid_run_and_takes_it_back_when_restarted(rss_file, tmp_path):
    """env2's ClientApp process is killed once training has begun: the server waits reply_timeout_s for env2's
    next reply, sets it aside and draws its pairs among env0 and env1; env2's process is then started again (it
    first answers the message it missed, which the server no longer waits for) and, once its RETRY_AFTER
    iterations are over, env2 serves again. The faults are in result.json; nothing hangs."""
    _need_flwr()
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    from xloc.learn.federated.server import RETRY_AFTER

    path, _ = rss_file
    port = 18760
    out = tmp_path / "kill"
    run = FederatedRun("maml-dg", ENVS, str(path), str(out), {**HYPER, "iterations": 3 * RETRY_AFTER},
                       audit_dir=str(tmp_path / "audit"), reply_timeout_s=5.0)
    events: list[tuple[str, float]] = []
    restarted: list[subprocess.Popen[bytes]] = []

    def training_began() -> bool:
        return any(e["type"].startswith("train.dg") for e in read_audit(run.audit_dir)) \
            if (tmp_path / "audit").is_dir() else False

    def kill_then_restart_env2() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not training_began():
            time.sleep(0.05)
        # env2 is the third environment: its SuperNode's runtime API is port + 12
        worker = f"federated.worker.*127.0.0.1:{port + 12}"
        supernode_log = out / "logs" / "supernode-env2.log"
        received = supernode_log.read_text().count("Receiving:")
        if subprocess.run(["pkill", "-9", "-f", worker], check=False).returncode == 0:
            events.append(("killed", time.time()))
        # restart once env2 has been sent a message it cannot answer, and the server has given up on it
        while time.time() < deadline and supernode_log.read_text().count("Receiving:") == received:
            time.sleep(0.05)
        time.sleep(run.reply_timeout_s + 1.0)
        env = {**os.environ, "FLWR_HOME": str(out / "flwr-home")}
        restarted.append(subprocess.Popen([sys.executable, "-m", "xloc.learn.federated.worker", "--insecure",
                                           "--runtime-api-address", f"127.0.0.1:{port + 12}"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        events.append(("restarted", time.time()))

    thread = threading.Thread(target=kill_then_restart_env2, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = federated.run_loopback(run, port=port)
    finally:
        thread.join(timeout=10)
        for p in restarted:
            os.killpg(p.pid, signal.SIGKILL)
    assert [e for e, _ in events] == ["killed", "restarted"], events
    assert result["faults"] and all(f["clients"] == ["env2"] for f in result["faults"]), result["faults"]
    assert (out / "model").is_dir()
    assert time.perf_counter() - t0 < 300
    entries = read_audit(run.audit_dir)
    restarted_at = events[1][1]
    env2_pids = {e["pid"] for e in entries if e["environment"] == "env2"}
    back = [e for e in entries if e["environment"] == "env2" and e["type"].startswith("train.dg")
            and e["at"] > restarted_at]
    # env2 answered again from its new process once it was asked again
    assert back and len(env2_pids) == 2, (env2_pids, result["faults"])
