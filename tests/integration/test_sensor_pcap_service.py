"""A remote site's sensor keeps its pcap; the central console fetches an alert's packets from it (Security Onion's
model). The sensor's pcap service runs as a real process in a namespace host over TLS with its own key; the
console asks it for the connections of an alert whose events that sensor saw (observer.name), and the file it
serves equals what the sensor's own spool gives for those connections. A wrong key, a sensor that is down, and a
service that answers with something that is not a capture each give the analyst one clear line."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collectors.connection_pcap import connections_pcap, write_pcap
from collectors.pcap_service import SensorPcapError, fetch_frames
from secops.config import ConsoleSettings, RemoteSensor
from secops.ecs import parse_time
from tests.support.console import add_users, audit_docs, console_app, http_client, sign_in, spool_capture
from tests.support.netns import Lab, require_root
from tests.support.playbook_lab import put_alert

pytestmark = pytest.mark.integration
KEY = "water-utility-sensor-key-0123456789"
SITE = "water-utility"


def certificate(ip: str, directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"sensor {ip}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "sensor.crt", directory / "sensor.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def wait_for(url: str, ca: Path, proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the pcap service exited"
        try:
            httpx.get(url, verify=str(ca), timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"the pcap service did not answer on {url}")


def test_the_console_fetches_an_alert_s_packets_from_the_sensor_that_saw_them(settings, es, testdata, tmp_path):
    require_root()
    prefix = settings.elasticsearch.index_prefix
    remote_spool = tmp_path / "site-spool"
    cids, first, last = spool_capture(remote_spool, testdata / "zeek" / "traces" / "ftp" / "ipv4.pcap")
    with Lab() as lab:
        site = lab.add_host("site")
        cert, key = certificate(site.ip, tmp_path)
        config = tmp_path / "site.yaml"
        config.write_text(yaml.safe_dump({"paths": {"state_dir": str(tmp_path / "site-state"),
                                                    "pcap_dir": str(remote_spool)},
                                          "sensor": {"pcap_service_key": KEY}}))
        proc = site.popen(sys.executable, "-m", "secops", "sensor", "pcap-service", "--host", site.ip,
                          "--port", "8444", "--tls-cert", str(cert), "--tls-key", str(key),
                          env=dict(os.environ, SECOPS_CONFIG=str(config)))
        url = f"https://{site.ip}:8444"
        wait_for(url + "/v1/pcap", cert, proc)

        central = settings.model_copy(update={"console": ConsoleSettings(sensors={
            SITE: RemoteSensor(url=url, api_key=KEY, ca_file=cert)})})
        put_alert(es, prefix, "site-ftp", source="198.18.1.1", destination="198.18.2.2", port=21, rule_id="ftp",
                  extra={"network.community_id": cids, "secops.alert.first_time": first,
                         "secops.alert.last_time": last, "observer.name": SITE})
        app = console_app(central, es)
        users = add_users(es, prefix)
        client = http_client(app)
        sign_in(client, users["analyst"])
        res = client.get("/alerts/site-ftp/pcap")
        assert res.status_code == 200, res.text
        # what the sensor's own spool holds for those connections, extracted there directly
        window = [(cid, parse_time(first) - dt.timedelta(minutes=5), parse_time(last) + dt.timedelta(minutes=5))
                  for cid in cids]
        direct = connections_pcap(remote_spool, window, tmp_path / "direct.pcap")
        assert direct is not None and direct.packets > 10
        assert res.content == direct.path.read_bytes()
        assert res.headers["X-Content-SHA256"] == direct.sha256 and res.headers["X-Packets"] == str(direct.packets)
        (audited,) = audit_docs(es, prefix, action="console.pcap.download")
        assert audited["details"]["sensors"] == [SITE] and audited["details"]["problems"] == []

        # a wrong key: refused, and the analyst reads why
        wrong = central.model_copy(update={"console": ConsoleSettings(sensors={
            SITE: RemoteSensor(url=url, api_key="not-the-sensor-key-000000000", ca_file=cert)})})
        client = http_client(console_app(wrong, es))
        sign_in(client, users["analyst"])
        res = client.get("/alerts/site-ftp/pcap")
        assert res.status_code == 404 and "refused the pcap request (HTTP 401)" in res.text, res.text
        with pytest.raises(SensorPcapError, match="HTTP 422"):
            fetch_frames(SITE, RemoteSensor(url=url, api_key=KEY, ca_file=cert),
                         [("not-a-community-id", *window[0][1:])], tmp_path / "x.part")

        # the sensor goes down: one line, and this host's own spool still counts
        proc.terminate()
        proc.wait(timeout=30)
        with pytest.raises(SensorPcapError, match="could not be reached"):
            fetch_frames(SITE, RemoteSensor(url=url, api_key=KEY, ca_file=cert, timeout_seconds=3), window,
                         tmp_path / "y.part")
        assert write_pcap([], tmp_path / "none.pcap", []) is None


def test_a_service_that_answers_with_no_capture_is_named(tmp_path):
    """A sensor (or something in its place) that answers 200 with bytes that are no capture."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    from tests.support.console import ConsoleServer

    fake = FastAPI()

    @fake.get("/v1/pcap")
    def not_a_capture() -> Response:
        return Response(b"<html>=cmd|' /C calc'!A0</html>", media_type="application/vnd.tcpdump.pcap")

    with ConsoleServer(fake) as server:
        now = dt.datetime.now(dt.UTC)
        with pytest.raises(SensorPcapError, match="not a capture"):
            fetch_frames(SITE, RemoteSensor(url=server.url, api_key=KEY),
                         [("1:LQU9qZlK+B5F3KDmev6m5PMibrg=", now, now)], tmp_path / "z.part")
