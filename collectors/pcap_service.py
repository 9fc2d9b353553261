"""A sensor's capture spool over HTTP(S) for a central console: Security Onion's model, where sensors keep their
pcap and ship only metadata, and the manager asks the sensor that saw a connection for its packets.

Server: ``secops sensor pcap-service`` (:func:`create_app`) answers ``GET /v1/pcap?community_id=..&start=..&end=..``
with the packets of those connections from its own spool, to a caller that presents the sensor's key
(``Authorization: ApiKey <sensor.pcap_service_key>``). Client: :func:`fetch_frames`, used by the console for every
sensor named in ``console.sensors`` that an alert's events name as their ``observer.name``.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from collectors.connection_pcap import MAX_PCAP_CONNECTIONS, Frame, Wanted, capture_frames, connections_pcap
from collectors.pcapio import CaptureError
from secops.config import RemoteSensor

PATH = "/v1/pcap"
COMMUNITY_ID = re.compile(r"^1:[A-Za-z0-9+/]{27}=$")
MAX_RESPONSE_BYTES = 256 << 20


class SensorPcapError(Exception):
    """A sensor's pcap could not be had (unreachable, refused, or not a capture): one line for the analyst."""


def create_app(pcap_dir: Path, api_key: str) -> FastAPI:
    """The pcap service of the spool in ``pcap_dir``, for callers presenting ``api_key``."""
    if len(api_key) < 24:
        raise ValueError("the pcap service key must be at least 24 characters")
    expected = f"ApiKey {api_key}".encode()
    app = FastAPI(title="secops sensor pcap service", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(PATH)
    def pcap(community_id: Annotated[list[str], Query(max_length=MAX_PCAP_CONNECTIONS)],
             start: datetime, end: datetime,
             authorization: Annotated[str, Header()] = "") -> FileResponse:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(401, "a valid sensor key is required (Authorization: ApiKey ...)")
        bad = [c for c in community_id if not COMMUNITY_ID.match(c)]
        if bad or not community_id:
            raise HTTPException(422, "community_id must be v1 Community IDs (1:...=)")
        if start.tzinfo is None or end.tzinfo is None or end < start:
            raise HTTPException(422, "start and end must be times with a zone, start before end")
        workdir = Path(tempfile.mkdtemp(prefix="secops-pcap-service-"))
        found = connections_pcap(pcap_dir, [(c, start, end) for c in dict.fromkeys(community_id)],
                                 workdir / "connections.pcap")
        if found is None:
            shutil.rmtree(workdir, ignore_errors=True)
            raise HTTPException(404, "the spool holds no packets of these connections")
        return FileResponse(found.path, media_type="application/vnd.tcpdump.pcap",
                            headers={"X-Content-SHA256": found.sha256, "X-Packets": str(found.packets)},
                            background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))

    return app


def fetch_frames(name: str, sensor: RemoteSensor, wanted: list[Wanted], scratch: Path) -> list[Frame]:
    """The frames of the wanted connections from a remote sensor's pcap service ([] when it holds none)."""
    by_range: dict[tuple[datetime, datetime], list[str]] = {}
    for cid, first, last in wanted:
        by_range.setdefault((first, last), []).append(cid)
    verify: str | bool = str(sensor.ca_file) if sensor.ca_file else sensor.verify_certs
    frames: list[Frame] = []
    try:
        with httpx.Client(base_url=sensor.url, verify=verify, timeout=sensor.timeout_seconds) as client:
            for (first, last), cids in by_range.items():
                frames += _fetch(client, name, sensor, cids, first, last, scratch)
    except httpx.HTTPError as exc:
        raise SensorPcapError(f"sensor {name} ({sensor.url}) could not be reached: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from None
    return frames


def _fetch(client: httpx.Client, name: str, sensor: RemoteSensor, cids: list[str], first: datetime, last: datetime,
           scratch: Path) -> list[Frame]:
    params = {"community_id": cids, "start": first.isoformat(), "end": last.isoformat()}
    headers = {"Authorization": f"ApiKey {sensor.api_key.get_secret_value()}"}
    with client.stream("GET", PATH, params=params, headers=headers) as res:
        if res.status_code == 404:
            return []
        if res.status_code != 200:
            detail = res.read()[:300].decode("utf-8", "replace")
            raise SensorPcapError(f"sensor {name} refused the pcap request (HTTP {res.status_code}): {detail}")
        size = 0
        with open(scratch, "wb") as out:
            for part in res.iter_bytes():
                size += len(part)
                if size > MAX_RESPONSE_BYTES:
                    raise SensorPcapError(f"sensor {name} sent more than {MAX_RESPONSE_BYTES >> 20} MB")
                out.write(part)
    try:
        return capture_frames(scratch)
    except CaptureError as exc:
        raise SensorPcapError(f"sensor {name} sent something that is not a capture: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            scratch.unlink()
