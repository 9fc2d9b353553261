"""End to end: three namespace hosts with real services, scanned by the real nmap through two real Celery
workers (Redis broker), merged into the inventory in a real Elasticsearch; then a service stops and a host
appears, and the next policy run records port_closed and new_asset."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from celery.result import AsyncResult

from secops.celery_app import app, configure
from secops.config import load_settings
from secops.ecs import iso, utcnow
from tests.support.netns import Lab, require_root
from tests.support.services import CeleryWorker

pytestmark = pytest.mark.integration
PORTS = "21,80,502,8080"

MODBUS_SERVER = """
import asyncio, sys
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer
block = ModbusSequentialDataBlock(1, [17] * 100)
ctx = ModbusServerContext(devices=ModbusDeviceContext(hr=block, ir=block, co=block, di=block), single=True)
asyncio.run(StartAsyncTcpServer(context=ctx, address=(sys.argv[1], 502)))
"""

VSFTPD_CONF = """listen=YES
listen_ipv6=NO
listen_address={ip}
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={root}
local_enable=NO
write_enable=NO
pasv_enable=NO
seccomp_sandbox=NO
secure_chroot_dir={root}
xferlog_enable=NO
"""


def wait_port(host: str, port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"service {host}:{port} did not come up")


def run_policy(now) -> list[dict]:
    started = app.send_task("collectors.scan_due_policies", kwargs={"now_iso": iso(now)}).get(timeout=60)
    assert started["started"], started
    ids = [i for s in started["started"] for i in s["task_ids"]]
    assert len(ids) == 2  # two chunks for two workers
    return [AsyncResult(i, app=app).get(timeout=150) for i in ids]


def assets(es):
    es.indices.refresh(index="secops-asset")
    return {ip: h["_source"] for h in es.search(index="secops-asset", size=100)["hits"]["hits"]
            for ip in h["_source"]["host"]["ip"]}


def changes(es, kind):
    es.indices.refresh(index="secops-asset_change-*")
    hits = es.search(index="secops-asset_change-*", query={"term": {"secops.asset_change.change": kind}}, size=100)
    return [h["_source"] for h in hits["hits"]["hits"]]


def test_scheduled_chunked_scan_of_namespace_hosts(es, settings, config_file, redis_server, tmp_path: Path):
    require_root()
    with Lab() as lab:
        web, ftp, plc = lab.add_host("web"), lab.add_host("ftp"), lab.add_host("plc")
        web.popen("python3", "-m", "http.server", "80", "--bind", web.ip, "--directory", str(tmp_path))
        root = tmp_path / "ftproot"
        root.mkdir()
        conf = tmp_path / "vsftpd.conf"
        conf.write_text(VSFTPD_CONF.format(ip=ftp.ip, root=root))
        ftpd = ftp.popen("vsftpd", str(conf))
        plc.popen("python3", "-c", MODBUS_SERVER, plc.ip)
        for host, port in ((web.ip, 80), (ftp.ip, 21), (plc.ip, 502)):
            wait_port(host, port)

        cfg = yaml.safe_load(config_file.read_text())
        cfg["scanning"] = {"scopes": {"lab": [str(lab.subnet)]}, "exclusions": [f"{lab.gateway}/32"],
                           "chunk_size": 256, "max_parallel_chunks": 2, "host_timeout_seconds": 30,
                           "policies": [{"name": "lab", "scope": "lab", "profile": "standard", "ports": PORTS,
                                         "timing": 5, "every_minutes": 60, "version_intensity": 0}]}
        cfg["inventory"] = {"zones": {"lab": [str(lab.subnet)]}}
        config_file.write_text(yaml.safe_dump(cfg))
        configure(app, load_settings(config_file))
        workers = [CeleryWorker(config_file, tmp_path / f"w{i}.log", 1, f"scan{i}").start() for i in (1, 2)]
        try:
            t0 = time.monotonic()
            results = run_policy(utcnow())
            first_scan = time.monotonic() - t0
            assert sum(r["hosts_seen"] for r in results) == 3
            found = assets(es)
            assert set(found) == {web.ip, ftp.ip, plc.ip}
            ports = {ip: {s["port"]: s for s in a["secops"]["asset"]["services"]} for ip, a in found.items()}
            assert set(ports[web.ip]) == {80} and set(ports[ftp.ip]) == {21} and set(ports[plc.ip]) == {502}
            assert ports[ftp.ip][21]["product"] == "vsftpd"
            assert ports[web.ip][80]["name"] == "http"
            assert all(a["host"]["mac"] and a["secops"]["asset"]["zone"] == "lab" for a in found.values())
            assert any(f.startswith("forbidden_service:ftp") for f in found[ftp.ip]["secops"]["asset"]["findings"])
            assert len(changes(es, "new_asset")) == 3
            # both workers took a chunk
            logs = [(tmp_path / f"w{i}.log").read_text() for i in (1, 2)]
            assert all("collectors.scan_chunk" in log and "succeeded" in log for log in logs)

            # not due again within every_minutes: nothing starts
            again = app.send_task("collectors.scan_due_policies", kwargs={"now_iso": iso(utcnow())}).get(timeout=60)
            assert again["started"] == [] and "lab" in again["skipped"]

            # a service stops, a new host appears; the next scheduled run notices both
            ftpd.kill()
            ftpd.wait(timeout=10)
            new = lab.add_host("new")
            new.popen("python3", "-m", "http.server", "8080", "--bind", new.ip, "--directory", str(tmp_path))
            wait_port(new.ip, 8080)
            run_policy(utcnow() + timedelta(minutes=61))
            closed = changes(es, "port_closed")
            assert [(c["secops"]["asset_change"]["port"], c["host"]["ip"]) for c in closed] == [(21, [ftp.ip])]
            fresh = [c for c in changes(es, "new_asset") if c["host"]["ip"] == [new.ip]]
            assert len(fresh) == 1
            found = assets(es)
            assert 21 not in {s["port"] for s in found[ftp.ip]["secops"]["asset"]["services"]}
            assert {s["port"] for s in found[new.ip]["secops"]["asset"]["services"]} == {8080}

            # on-demand rescan (playbooks' entry point) through the workers; hostile input refused there too
            res = app.send_task("collectors.scan_targets", args=[[new.ip], "discovery", "test"]).get(timeout=120)
            assert res["ok"] and res["hosts_up"] == 1
            res = app.send_task("collectors.scan_targets", args=[[f"{new.ip},--script=x"], "standard", "t"]).get(60)
            assert res["ok"] is False and "not allowed" in res["error"]
            res = app.send_task("collectors.scan_targets", args=[["127.0.0.1"], "standard", "t"]).get(timeout=60)
            assert res["ok"] is False and "outside the scan scope" in res["error"]
            print(f"first scheduled scan: {first_scan:.1f}s")
        finally:
            for w in workers:
                w.stop()
