"""A multi-host rehearsal on one machine: every host is a Linux network namespace, joined to the others by a
bridge; the SuperLink speaks TLS with a CA made for the run; torchrun's gloo ranks meet across two hosts.

Needs root (``ip netns``) and ``openssl``. Hosts get 10.77.0.10 (the server) and 10.77.0.11, ... (one per client
environment) on a /24 that exists only inside the namespaces: no traffic leaves the sandbox, and everything is
torn down at the end, after a failure too (:func:`hosts`).

    xloc federated --data pl.h5 --mode hosts -o fed-hosts/
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xloc.errors import DataValidationError
from xloc.learn.federated.launch import Placement, run_placed
from xloc.learn.federated.protocol import FederatedRun

__all__ = ["Hosts", "hosts", "make_certificates", "run_hosts", "run_torchrun_across", "netns_available"]

SUBNET = "10.77.0"
SERVER_IP = f"{SUBNET}.10"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataValidationError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def netns_available() -> str | None:
    """None if network namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"xloc-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


@dataclass(frozen=True)
class Hosts:
    """The namespaces of one rehearsal: ``names[0]`` is the server, the others the clients; ``ips`` alike."""

    names: tuple[str, ...]
    ips: tuple[str, ...]

    def prefix(self, i: int) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.names[i])


@contextmanager
def hosts(n_clients: int, tag: str = "xl") -> Iterator[Hosts]:
    """``1 + n_clients`` namespaces on one bridge (in a namespace of its own), removed on exit."""
    if not 1 <= n_clients <= 40:
        raise DataValidationError(f"n_clients must lie in [1, 40], got {n_clients}")
    if len(tag) > 4 or not tag.isalnum():
        raise DataValidationError(f"tag must be 1-4 letters or digits (it names interfaces), got {tag!r}")
    lan = f"{tag}-lan"
    names = tuple(f"{tag}-h{i}" for i in range(n_clients + 1))
    ips = tuple(f"{SUBNET}.{10 + i}" for i in range(n_clients + 1))
    taken = [ns for ns in (lan, *names) if Path(f"/run/netns/{ns}").exists()]
    if taken:  # checked before making any: the other run's namespaces must not be torn down by this one
        raise DataValidationError(
            f"network namespace {taken[0]!r} already exists: another rehearsal with tag {tag!r} is running on this "
            f"machine, or one was killed before its teardown; pick another tag, or remove the leftovers with "
            f"`ip netns del` ({', '.join(taken)})")
    made: list[str] = []
    try:
        for ns in (lan, *names):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", lan, "link", "add", "br0", "type", "bridge")
        _ip("-n", lan, "link", "set", "br0", "up")
        for i, (ns, addr) in enumerate(zip(names, ips, strict=True)):
            host_end, lan_end = f"{tag}v{i}", f"{tag}b{i}"
            _ip("link", "add", host_end, "netns", ns, "type", "veth", "peer", "name", lan_end, "netns", lan)
            _ip("-n", lan, "link", "set", lan_end, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", host_end)
            _ip("-n", ns, "link", "set", host_end, "up")
        yield Hosts(names, ips)
    finally:
        for ns in reversed(made):  # deleting a namespace deletes its veth ends
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def make_certificates(folder: Path, server_ip: str = SERVER_IP) -> tuple[str, str, str]:
    """A CA made for this run and the SuperLink's certificate for ``server_ip`` signed by it: (ca.crt,
    server.pem, server.key)."""
    if shutil.which("openssl") is None:
        raise DataValidationError("openssl is not installed: it makes the rehearsal's certificates")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.pem"))
    ext = folder / "server.ext"
    ext.write_text(f"subjectAltName = IP:{server_ip}, IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=xloc rehearsal CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj",
         f"/CN={server_ip}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]
    for step in steps:
        done = subprocess.run([str(s) for s in step], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DataValidationError(f"{' '.join(map(str, step[:3]))} failed: {done.stderr.strip()[-500:]}")
    return str(ca), str(cert), str(key)


def run_hosts(run: FederatedRun, *, port: int = 9092, timeout_s: float = 900.0, client_apps: str = "long-lived",
              supernode_poll_s: float | None = 0.1, tag: str = "xl") -> dict[str, Any]:
    """The federation with the server and every client on a host of its own (namespaces), TLS between the
    SuperNodes and the SuperLink; ``result.json`` as :func:`~xloc.learn.federated.run_loopback` writes it, with
    the hosts' addresses added."""
    why = netns_available()
    if why is not None:
        raise DataValidationError(f"the hosts rehearsal cannot run here: {why}")
    tls = make_certificates(Path(run.out) / "certs")
    with hosts(len(run.environments), tag) as h:
        placement = Placement(superlink_bind=SERVER_IP, superlink_address=SERVER_IP, port=port,
                              server_prefix=h.prefix(0),
                              client_prefixes=tuple(h.prefix(i + 1) for i in range(len(run.environments))),
                              tls=tls)
        result = run_placed(run, placement, timeout_s=timeout_s, client_apps=client_apps,
                            supernode_poll_s=supernode_poll_s)
        result["hosts"] = {"server": h.ips[0], **{env: h.ips[i + 1] for i, env in enumerate(run.environments)}}
    result["tls"] = True
    return result


def run_torchrun_across(arguments: list[str], out: Path, *, port: int = 29511, timeout_s: float = 600.0,
                        tag: str = "xt") -> list[int]:
    """``python -m xloc.cli ARGUMENTS`` as two torchrun nodes of one rank each on two hosts (namespaces), gloo
    over the bridge; their exit codes. Logs go to ``out/torchrun-node{0,1}.log``."""
    why = netns_available()
    if why is not None:
        raise DataValidationError(f"the torchrun rehearsal cannot run here: {why}")
    out.mkdir(parents=True, exist_ok=True)
    with hosts(1, tag) as h:
        procs = []
        for rank in (0, 1):
            env = {**os.environ, "GLOO_SOCKET_IFNAME": f"{tag}v{rank}"}
            command = [*h.prefix(rank), sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                       f"--node_rank={rank}", "--nproc_per_node=1", f"--master_addr={h.ips[0]}",
                       f"--master_port={port}", "-m", "xloc.cli", *arguments]
            procs.append(subprocess.Popen(command, env=env, stdout=open(out / f"torchrun-node{rank}.log", "wb"),
                                          stderr=subprocess.STDOUT, start_new_session=True))
        codes = []
        try:
            for p in procs:
                codes.append(p.wait(timeout=timeout_s))
        finally:
            import signal

            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
    return codes
