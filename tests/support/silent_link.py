"""A service on loopback (the test Elasticsearch node) reached over a link that can go silently down.

The client in the root namespace talks to ``url``, an address inside a lab namespace; a relay there forwards
back over the same veth pair to a relay on the lab gateway, which reaches the service. ``cut()`` sets the
veth down (``ip link set ... down``): packets are dropped without a reset, an ICMP error or an ARP failure
(the neighbour entry is static, as for a router whose far side failed), so a client's requests hang until
their own timeouts, as on a real WAN cut. The route stays on the lab bridge while the link is down (checked),
so nothing ever leaves for the default route."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from tests.support.netns import Host, Lab, sh
from tests.support.relay import TcpRelay

PORT = 9200


class SilentLink:
    """Use as a context manager (inside any other lab: ``tag`` keeps their names apart)."""

    def __init__(self, target: tuple[str, int], tag: str) -> None:
        self.target = target
        self.lab = Lab(tag=tag)
        self.host: Host | None = None
        self.back: TcpRelay | None = None

    @property
    def url(self) -> str:
        assert self.host is not None
        return f"http://{self.host.ip}:{PORT}"

    def __enter__(self) -> SilentLink:
        self.lab.__enter__()
        try:
            for conf in ("all", self.lab.bridge):  # else a down link's route is skipped for the default route
                if Path(f"/proc/sys/net/ipv4/conf/{conf}/ignore_routes_with_linkdown").read_text().strip() != "0":
                    raise RuntimeError(f"net.ipv4.conf.{conf}.ignore_routes_with_linkdown is set: no link cuts")
            self.host = host = self.lab.add_host("es")
            self.back = TcpRelay(self.lab.gateway, self.target)
            host.popen(sys.executable, "-m", "tests.support.relay", host.ip, str(PORT), self.lab.gateway,
                       str(self.back.address[1]))
            mac = host.run("cat", "/sys/class/net/eth0/address").stdout.strip()
            sh("ip", "neigh", "replace", host.ip, "lladdr", mac, "dev", self.lab.bridge, "nud", "permanent")
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection((host.ip, PORT), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _route_stays(self) -> None:
        assert self.host is not None
        route = sh("ip", "route", "get", self.host.ip).stdout
        assert f"dev {self.lab.bridge}" in route, f"the lab's route is gone: {route}"

    def cut(self) -> None:
        assert self.host is not None
        sh("ip", "link", "set", self.host.link, "down")
        self._route_stays()

    def restore(self) -> None:
        assert self.host is not None
        sh("ip", "link", "set", self.host.link, "up")

    def __exit__(self, *exc: object) -> None:
        if self.back is not None:
            self.back.close()
        self.lab.__exit__(*exc)
