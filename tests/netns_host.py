"""A second Docker host made by a root test: a network namespace with its own address on a
veth pair (reaching the package indexes through this machine, as a server would) and a
rootful dockerd in it, with the base image loaded from this machine's engine (no registry
here). Removed whole afterwards: its processes, mounts, rules, link and namespace."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import load_base, stop_group, wait_for_docker


def sh(*cmd: str, ns: str | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=check, capture_output=True, text=True, **kw)


@dataclass
class Host:
    ns: str  # the namespace's name (/run/netns/NS)
    address: str  # its address on the veth
    gateway: str  # this machine's address on the veth
    socket: str  # DOCKER_HOST of its engine
    state: Path  # the engine's folders and socket
    procs: list[subprocess.Popen]  # its engine first; the test may add more

    def start(self, *cmd: str, log: Path) -> subprocess.Popen:
        """A process in the namespace (nsenter --net, not `ip netns exec`: that remounts
        /sys, hiding the cgroups), stopped with the host."""
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns}", *cmd],
                             stdout=log.open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("docker", "-H", self.socket, *args, check=check)


@contextlib.contextmanager
def netns_engine(prefix: str, logs: Path, engine_args: tuple[str, ...] = ()) -> Iterator[Host]:
    tag = secrets.token_hex(2)
    ns, host_if, box_if = f"{prefix}-{tag}", f"lc{tag}h", f"lc{tag}b"
    net = f"10.231.{int(tag, 16) % 250 + 1}"
    state = Path(f"/run/{prefix}-{tag}")
    state.mkdir()
    state.chmod(0o755)  # whatever the umask: another user may reach its socket
    host = Host(ns, f"{net}.2", f"{net}.1", f"unix://{state}/docker.sock", state, [])
    nat = ["-s", f"{net}.0/30", "-j"]
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", box_if)
        sh("ip", "link", "set", box_if, "netns", ns)
        sh("ip", "addr", "add", f"{net}.1/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        for cmd in (["ip", "addr", "add", f"{net}.2/30", "dev", box_if],
                    ["ip", "link", "set", box_if, "up"], ["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "default", "via", f"{net}.1"]):
            sh(*cmd, ns=ns)
        sh("iptables", "-t", "nat", "-A", "POSTROUTING", *nat, "MASQUERADE")
        sh("iptables", "-I", "DOCKER-USER", *nat, "ACCEPT", check=False)
        sh("iptables", "-I", "DOCKER-USER", "-d", f"{net}.0/30", "-j", "ACCEPT", check=False)
        engine = host.start("dockerd", "--data-root", str(state / "data"), "--exec-root",
                            str(state / "exec"), "-H", host.socket, "--pidfile",
                            str(state / "docker.pid"), *engine_args, log=logs / "dockerd.log")
        wait_for_docker(engine, "the second host's dockerd", logs / "dockerd.log", "-H",
                        host.socket)
        load_base(host.socket)
        yield host
    finally:
        for p in reversed(host.procs):
            stop_group(p)
        # what the engine left mounted (its containers' and networks' namespaces)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(f"{state}/")]
        for m in sorted(mounts, reverse=True):
            sh("umount", "-l", m, check=False)
        sh("iptables", "-t", "nat", "-D", "POSTROUTING", *nat, "MASQUERADE", check=False)
        sh("iptables", "-D", "DOCKER-USER", *nat, "ACCEPT", check=False)
        sh("iptables", "-D", "DOCKER-USER", "-d", f"{net}.0/30", "-j", "ACCEPT", check=False)
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(state, ignore_errors=True)
