"""Real test hosts in network namespaces, joined by a bridge in the root namespace.

Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space), one /24 per lab, chosen so that
concurrent labs on the same machine never share a subnet. Every host is reachable from the root
namespace (where nmap and the sensor run) through the bridge; the sensor can capture on the bridge
to see all host-to-host traffic. Only ever send traffic to these addresses.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LOCK = Path("/tmp/secops-netns.lock")
NET = ipaddress.ip_network("198.18.0.0/15")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def require_root() -> None:
    if os.geteuid() != 0:
        raise RuntimeError("this test needs root (network namespaces); CI runs as root")


def _used_subnets() -> set[int]:
    out = sh("ip", "-4", "-o", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        for tok in line.split():
            if tok.startswith("198.18.") or tok.startswith("198.19."):
                addr = ipaddress.ip_interface(tok)
                used.add(int(addr.network.network_address) >> 8)
    return used


@dataclass
class Host:
    name: str  # namespace name
    ip: str
    lab: Lab
    link: str = ""  # the root-namespace end of its veth pair (a port of the lab bridge)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*args), check=check, capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(self.cmd(*args), start_new_session=True, **kw)
        self.lab.procs.append(proc)
        return proc


@dataclass
class Lab:
    """A bridge plus namespaces. Use as a context manager; everything is removed on exit."""

    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000:05d}")
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    subnet: ipaddress.IPv4Network | None = None

    @property
    def bridge(self) -> str:
        return f"sob{self.tag}"  # <= 15 chars

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def __enter__(self) -> Lab:
        require_root()
        LOCK.touch(exist_ok=True)
        with open(LOCK) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _used_subnets()
            base = int(NET.network_address) >> 8
            for i in range(1, 512):
                if base + i not in used:
                    self.subnet = ipaddress.ip_network(((base + i) << 8, 24))
                    break
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
        return self

    def add_host(self, short: str) -> Host:
        """Create namespace <tag><short> with the next free address of the lab's /24."""
        index = len(self.hosts) + 10
        name = f"so{self.tag}{short}"[:15]
        ip = str(self.subnet.network_address + index)
        veth, peer = f"v{self.tag}{index}"[:15], f"p{self.tag}{index}"[:15]
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", name)
        sh("ip", "link", "set", veth, "master", self.bridge)
        sh("ip", "link", "set", veth, "up")
        for args in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{ip}/24", "dev", peer],
                     ["ip", "link", "set", peer, "name", "eth0"], ["ip", "link", "set", "eth0", "up"],
                     ["ip", "route", "add", "default", "via", self.gateway]):
            sh("ip", "netns", "exec", name, *args)
        host = Host(name, ip, self, veth)
        self.hosts[short] = host
        return host

    def remove_host(self, short: str) -> None:
        host = self.hosts.pop(short)
        for pid in sh("ip", "netns", "pids", host.name, check=False).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        sh("ip", "netns", "del", host.name, check=False)

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for short in list(self.hosts):
            self.remove_host(short)
        sh("ip", "link", "del", self.bridge, check=False)
