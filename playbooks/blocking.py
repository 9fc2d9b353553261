"""Address blocks with a TTL: nftables sets with ``flags timeout`` (expire in the kernel) or iptables rules
(expired by housekeeping). Commands are argument lists built from validated, normalised addresses only."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from playbooks.errors import ActionError, PermanentError
from secops.config import PlaybookSettings
from secops.i18n import N_, Message, message

TABLE = "secops"
NFT_SETUP = f"""table inet {TABLE} {{
  set blocked4 {{ type ipv4_addr; flags timeout; }}
  set blocked6 {{ type ipv6_addr; flags timeout; }}
  chain input {{ type filter hook input priority -10; policy accept;
    ip saddr @blocked4 drop; ip6 saddr @blocked6 drop; }}
  chain forward {{ type filter hook forward priority -10; policy accept;
    ip saddr @blocked4 drop; ip6 saddr @blocked6 drop; }}
}}
"""
COMMENT_RE = re.compile(r"secops-block:(\d+)")
ALWAYS_PROTECTED = ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"]


@dataclass(frozen=True)
class Blocker:
    settings: PlaybookSettings
    timeout: float = 10.0

    def _wrap(self, argv: list[str]) -> list[str]:
        ns = self.settings.block_netns
        return ["ip", "netns", "exec", ns, *argv] if ns else argv

    def _run(self, argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(self._wrap(argv), input=stdin, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ActionError(message(N_("%(program)s timed out after %(seconds)ss"), program=argv[0],
                                      seconds=f"{self.timeout:.0f}")) from None
        except FileNotFoundError as exc:
            raise PermanentError(message(N_("%(program)s not installed"), program=exc.filename)) from None
        if check and proc.returncode != 0:
            raise ActionError(message(N_("%(program)s failed: %(stderr)s"), program=" ".join(argv[:4]),
                                      stderr=proc.stderr.strip()[:300]))
        return proc

    # -- plans -------------------------------------------------------------------------------
    def commands(self, address: str, ttl: int) -> list[list[str]]:
        """The commands ``block`` runs (shown by dry-run)."""
        if self.settings.block_backend == "nftables":
            return [[*self._wrap(["nft", "-f", "-"]), "<table inet secops setup, if missing>"],
                    self._wrap(["nft", "add", "element", "inet", TABLE, _set(address), "{", address, "timeout",
                                f"{ttl}s", "}"])]
        return [self._wrap([_iptables(address), "-I", "INPUT", "-s", address, "-j", "DROP", "-m", "comment",
                            "--comment", f"secops-block:{int(time.time()) + ttl}"])]

    # -- actions -----------------------------------------------------------------------------
    def block(self, address: str, ttl: int) -> dict[str, Any]:
        if self.settings.block_backend == "nftables":
            if self._run(["nft", "list", "table", "inet", TABLE], check=False).returncode != 0:
                self._run(["nft", "-f", "-"], stdin=NFT_SETUP)
            elem = ["inet", TABLE, _set(address), "{", address, "}"]
            if self._run(["nft", "get", "element", *elem], check=False).returncode == 0:
                return {"backend": "nftables", "already_blocked": True}
            self._run(["nft", "add", "element", "inet", TABLE, _set(address), "{", address, "timeout", f"{ttl}s", "}"])
            return {"backend": "nftables", "already_blocked": False}
        if self._iptables_rules(address):
            return {"backend": "iptables", "already_blocked": True}
        self._run([_iptables(address), "-I", "INPUT", "-s", address, "-j", "DROP", "-m", "comment", "--comment",
                   f"secops-block:{int(time.time()) + ttl}"])
        return {"backend": "iptables", "already_blocked": False}

    def unblock(self, address: str) -> dict[str, Any]:
        if self.settings.block_backend == "nftables":
            proc = self._run(["nft", "delete", "element", "inet", TABLE, _set(address), "{", address, "}"], check=False)
            return {"backend": "nftables", "removed": proc.returncode == 0}
        removed = 0
        for spec in self._iptables_rules(address):
            self._run([_iptables(address), "-D", "INPUT", *spec])
            removed += 1
        return {"backend": "iptables", "removed": bool(removed)}

    def is_blocked(self, address: str) -> bool:
        if self.settings.block_backend == "nftables":
            return self._run(["nft", "get", "element", "inet", TABLE, _set(address), "{", address, "}"],
                             check=False).returncode == 0
        return bool(self._iptables_rules(address))

    def _iptables_rules(self, address: str | None = None, family: int = 4) -> list[list[str]]:
        """Rule specs (after ``-A INPUT``) of our blocks, for one address or all."""
        exe = _iptables(address) if address else ("iptables" if family == 4 else "ip6tables")
        out = self._run([exe, "-S", "INPUT"], check=False).stdout
        specs = []
        for line in out.splitlines():
            parts = line.split()
            if parts[:2] != ["-A", "INPUT"] or not COMMENT_RE.search(line):
                continue
            if address is None or _src(parts) == address:
                specs.append([p.strip('"') for p in parts[2:]])
        return specs

    def expire_iptables(self, now: float | None = None) -> list[str]:
        """Remove iptables blocks whose TTL passed; returns the addresses unblocked."""
        now = now or time.time()
        gone = []
        for family, exe in ((4, "iptables"), (6, "ip6tables")):
            for spec in self._iptables_rules(None, family):
                m = COMMENT_RE.search(" ".join(spec))
                if m and int(m.group(1)) <= now:
                    self._run([exe, "-D", "INPUT", *spec])
                    gone.append(_src(["-A", "INPUT", *spec]) or "?")
        return gone


def _src(parts: list[str]) -> str | None:
    if "-s" in parts:
        return str(ipaddress.ip_interface(parts[parts.index("-s") + 1]).ip)
    return None


def _set(address: str) -> str:
    return "blocked4" if ipaddress.ip_address(address).version == 4 else "blocked6"


def _iptables(address: str) -> str:
    return "iptables" if ipaddress.ip_address(address).version == 4 else "ip6tables"


def protected_reason(address: str, protected: list[str]) -> Message | None:
    """Why this address may never be contained (loopback always), or None."""
    addr = ipaddress.ip_address(address)
    if addr.is_loopback:
        return message(N_("%(address)s is loopback"), address=address)
    for entry in [*ALWAYS_PROTECTED, *protected]:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue  # hostnames in the protected list are resolved nowhere: only addresses and networks count
        if addr.version == net.version and addr in net:
            return message(N_("%(address)s is protected (%(entry)s)"), address=address, entry=entry)
    return None
