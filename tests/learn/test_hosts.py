"""The multi-host rehearsal (xloc.learn.federated.hosts): the server and three clients on hosts of their own
(network namespaces on one bridge), TLS from a CA made for the run, the centralised meta-parameters; torchrun's
gloo ranks across two hosts; the namespaces are gone afterwards, after a failure too."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import skip_or_fail
from tests.learn.test_distributed import app, engine_weight_difference, maml_ts_train_command, runner
from tests.learn.test_federated import ENVS, HYPER, _assert_no_raw_data, _assert_same_params, _need_flwr, rss_file  # noqa: F401
from xloc.errors import DataValidationError
from xloc.learn.federated import FederatedRun
from xloc.learn.federated.hosts import hosts, netns_available, run_hosts, run_torchrun_across
from xloc.learn.metaloc import MetaLoc


def _need_hosts() -> None:
    why = netns_available()
    if why is not None:
        skip_or_fail("hosts", why)


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_hosts_are_torn_down_even_after_a_failure():
    _need_hosts()
    before = _namespaces()
    with pytest.raises(RuntimeError, match="planted"), hosts(2, "xq") as h:
        assert set(h.names) <= _namespaces() and len(h.ips) == 3
        # one host reaches another over the bridge (a TCP echo of one line)
        server = subprocess.Popen([*h.prefix(2), sys.executable, "-c",
                                   "import socket; s = socket.create_server(('0.0.0.0', 19555)); c, _ = s.accept(); "
                                   "c.sendall(c.recv(16))"])
        reply = subprocess.run([*h.prefix(1), sys.executable, "-c",
                                "import socket, time\nfor _ in range(50):\n    try:\n"
                                f"        c = socket.create_connection(('{h.ips[2]}', 19555), timeout=2); break\n"
                                "    except OSError: time.sleep(0.1)\nc.sendall(b'hello'); print(c.recv(16).decode())"],
                               capture_output=True, text=True, timeout=30, check=False)
        server.wait(timeout=10)
        assert reply.stdout.strip() == "hello", reply.stderr
        raise RuntimeError("planted")
    assert _namespaces() == before


def test_a_leftover_namespace_is_named_and_left_alone():
    """A namespace of the tag that exists already (another rehearsal running, or one killed before its teardown)
    is a clear error naming it; the rehearsal removes only what it made, not the other run's namespace."""
    _need_hosts()
    subprocess.run(["ip", "netns", "add", "xe-h1"], check=True)
    try:
        before = _namespaces()
        with pytest.raises(DataValidationError, match="'xe-h1' already exists.*ip netns del"), hosts(1, "xe"):
            pass
        assert _namespaces() == before
    finally:
        subprocess.run(["ip", "netns", "del", "xe-h1"], check=False)


def test_federation_across_hosts_with_tls_gives_the_centralised_parameters(rss_file, tmp_path):  # noqa: F811
    _need_flwr()
    _need_hosts()
    path, fs = rss_file
    hyper = {**HYPER, "iterations": 1}
    run = FederatedRun("maml-dg", ENVS, str(path), str(tmp_path / "hosts"), hyper, audit_dir=str(tmp_path / "audit"))
    result = run_hosts(run, port=19092, tag="xf")
    assert result["tls"] and len(set(result["hosts"].values())) == len(ENVS) + 1
    _assert_same_params(MetaLoc("maml-dg", **hyper).fit(fs), tmp_path / "hosts" / "model")
    _assert_no_raw_data(run.audit_dir, {"query.hello", "train.dg_inner", "train.dg_outer", "evaluate.val"})
    # the SuperLink served HTTPS on the server host; the SuperNodes had only the run's CA to trust it by
    superlink_log = (tmp_path / "hosts" / "logs" / "superlink.log").read_text(errors="replace")
    assert f"running on https://{result['hosts']['server']}:19092" in superlink_log


def test_torchrun_ranks_on_two_hosts_train_like_one_process(tmp_path):
    _need_hosts()
    common = maml_ts_train_command(tmp_path)
    one = runner.invoke(app, [*common, "-o", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    codes = run_torchrun_across([*common, "-o", str(tmp_path / "two")], tmp_path / "logs", tag="xt")
    assert codes == [0, 0], (tmp_path / "logs" / "torchrun-node1.log").read_text(errors="replace")[-2000:]
    assert engine_weight_difference(tmp_path / "one", tmp_path / "two") < 1e-5
