"""pcap: cut the packets of the alert's connections out of the capture spool into an evidence file.

Spool files are selected by modification time around the alert's window and filtered with tshark
(read filter built from validated addresses and ports only), then merged with mergecap. With no
spool or no matching capture the step succeeds with ``status: unavailable`` and the reason.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field

from playbooks.actions.base import Action, ActionContext, ActionError, Params
from playbooks.values import Address, Port
from secops.ecs import get, parse_time
from secops.i18n import N_, message

SUFFIXES = (".pcap", ".pcapng")
CHUNK_RE = re.compile(r"^chunk-(\d{1,20})-\d+\.pcap$")


class PcapParams(Params):
    address: Address
    peer: Address | None = None
    port: Port | None = None
    window_seconds: int = Field(300, ge=1, le=86400)


class AttachPcap(Action):
    name = "pcap"
    uses_alert = True
    Params = PcapParams
    read_only = False

    def _filter(self, p: PcapParams) -> str:
        parts = [f"ip.addr == {p.address}" if ":" not in p.address else f"ipv6.addr == {p.address}"]
        if p.peer:
            parts.append(f"ip.addr == {p.peer}" if ":" not in p.peer else f"ipv6.addr == {p.peer}")
        if p.port:
            parts.append(f"(tcp.port == {p.port} || udp.port == {p.port})")
        return " && ".join(parts)

    def _files(self, p: PcapParams, ctx: ActionContext) -> tuple[list[Path], str | None]:
        """Closed spool chunks (``chunk-<first packet ns>-<seq>.pcap``; ``.part`` is still being written) whose
        span [first packet, last write] overlaps the alert's window widened by ``window_seconds``."""
        spool = ctx.settings.paths.pcaps()
        if not spool.is_dir():
            return [], f"no pcap spool at {spool}"
        first = get(ctx.alert, "secops.alert.first_time") or get(ctx.alert, "@timestamp")
        last = get(ctx.alert, "secops.alert.last_time") or first
        files = sorted(f for f in spool.rglob("*") if f.suffix in SUFFIXES and f.is_file())
        if first:
            lo, hi = parse_time(first).timestamp() - p.window_seconds, parse_time(last).timestamp() + p.window_seconds
            files = [f for f in files if _span(f)[0] <= hi and _span(f)[1] >= lo]
        return files, None if files else f"no capture files in {spool} cover the alert's time window"

    def plan(self, p: PcapParams, ctx: ActionContext) -> dict[str, Any]:
        files, why = self._files(p, ctx)
        return {"would": "extract packets", "filter": self._filter(p), "files": [str(f) for f in files[:20]],
                "unavailable": why, "summary": message(N_("extract the alert's packets from %(n)s spool files"),
                                                       n=len(files)).as_doc()}

    def run(self, p: PcapParams, ctx: ActionContext) -> dict[str, Any]:
        files, why = self._files(p, ctx)
        if why:
            return {"status": "unavailable", "reason": why}
        out_dir = ctx.settings.paths.state_dir / "evidence"
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"{ctx.run_id}-{ctx.step}.pcapng"
        tshark = ctx.settings.sensor.tshark_path
        with tempfile.TemporaryDirectory(prefix="secops-pcap-") as tmp:
            parts = []
            for i, f in enumerate(files[:200]):
                part = Path(tmp) / f"{i:04d}.pcapng"
                self._exec([tshark, "-r", str(f), "-Y", self._filter(p), "-w", str(part)], ctx.timeout)
                if part.exists() and part.stat().st_size > 0:
                    parts.append(str(part))
            if not parts:
                return {"status": "unavailable", "reason": "no packets matched in the spool"}
            self._exec(["mergecap", "-w", str(out), *parts], ctx.timeout)
        count = self._exec(["capinfos", "-c", "-M", "-T", str(out)], ctx.timeout).stdout.strip().splitlines()
        return {"status": "attached", "path": str(out), "files_scanned": len(files),
                "packets": int(count[-1].split("\t")[-1]) if count and count[-1].split("\t")[-1].isdigit() else None}

    @staticmethod
    def _exec(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ActionError(message(N_("%(program)s timed out"), program=argv[0])) from None
        if proc.returncode != 0:
            raise ActionError(message(N_("%(program)s failed: %(stderr)s"), program=argv[0],
                                      stderr=proc.stderr.strip()[:300]))
        return proc


def _span(path: Path) -> tuple[float, float]:
    """(first packet, last write) of a spool chunk in epoch seconds; the start is the file time if unnamed."""
    mtime = path.stat().st_mtime
    m = CHUNK_RE.match(path.name)
    return (int(m.group(1)) / 1e9 if m else min(mtime, path.stat().st_ctime)), mtime
