"""Protocol detection on any port, against real servers in network namespaces: HTTP on 8443 (python's
http.server), TLS on 2222 (python's ssl), SSH on 80 (dropbear, with OpenSSH's client). Wireshark's dumpcap
captures the lab bridge; the offline pipeline must name each connection's service by what it spoke."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from collectors.ingest import Pipeline
from tests.support.netns import Lab

TLS_SERVER = r"""
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = socket.create_server((sys.argv[1], 2222))
while True:
    conn, _ = srv.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(100)
            tls.sendall(b"pong")
    except (ssl.SSLError, OSError):
        pass
"""

CLIENT = r"""
import socket, ssl, sys, urllib.request
ip = sys.argv[1]
assert urllib.request.urlopen(f"http://{ip}:8443/", timeout=10).read() == b"hello lab"
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
with socket.create_connection((ip, 2222), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="tls.lab.test") as s:
    s.sendall(b"ping")
    assert s.recv(4) == b"pong"
"""


def wait_port(host, port: int) -> None:
    for _ in range(100):
        if f":{port} " in host.run("ss", "-lnt", check=False).stdout:
            return
        time.sleep(0.1)
    raise AssertionError(f"tcp/{port} never listened in {host.name}")


def test_services_are_what_was_spoken_not_what_the_port_suggests(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"hello lab")
    key, cert, hostkey = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "dropbear_ed25519"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=tls.lab.test"], check=True, capture_output=True)
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(hostkey)], check=True, capture_output=True)
    pcap = tmp_path / "lab.pcap"
    with Lab() as lab:
        srv, cli = lab.add_host("srv"), lab.add_host("cli")
        srv.popen(sys.executable, "-m", "http.server", "8443", "--bind", srv.ip, "--directory", str(www))
        srv.popen(sys.executable, "-c", TLS_SERVER, srv.ip, str(cert), str(key))
        srv.popen("dropbear", "-F", "-E", "-s", "-p", f"{srv.ip}:80", "-r", str(hostkey))
        for port in (8443, 2222, 80):
            wait_port(srv, port)
        capture = subprocess.Popen(["dumpcap", "-q", "-P", "-i", lab.bridge, "-w", str(pcap)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            time.sleep(1.5)  # dumpcap has the interface open
            cli.run(sys.executable, "-c", CLIENT, srv.ip, timeout=60)
            # the real OpenSSH client: banner and key exchange, then a refused login (no keys, batch mode)
            ssh = cli.run("ssh", "-p", "80", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                          "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", f"nobody@{srv.ip}", "true",
                          check=False, timeout=60)
            assert "Permission denied" in ssh.stderr or "publickey" in ssh.stderr, ssh.stderr
            time.sleep(1)
        finally:
            capture.terminate()
            capture.wait(timeout=30)

    docs: list[dict] = []
    warnings: list[str] = []
    pipe = Pipeline(docs.append, on_warning=warnings.append)
    pipe.process_file(pcap)
    pipe.finish()
    conns = [d for d in docs if d["event"]["dataset"] == "secops.conn" and d["source"]["ip"] == cli.ip]
    by_port: dict[int, list[dict]] = {}
    for d in conns:
        by_port.setdefault(d["destination"]["port"], []).append(d)
    assert set(by_port) >= {8443, 2222, 80}, sorted(by_port)
    for port, service in ((8443, "http"), (2222, "ssl"), (80, "ssh")):
        for d in by_port[port]:
            assert d["network"].get("protocol") == [service], (port, d["network"], d["secops"]["conn"])
    # the deep path got the frames of those flows and its analyzers found what the flows carried
    datasets = {(d["event"]["dataset"], d["destination"]["port"]) for d in docs if "destination" in d}
    assert ("secops.tls", 2222) in datasets, sorted(datasets)
    tls = next(d for d in docs if d["event"]["dataset"] == "secops.tls" and d["destination"]["port"] == 2222)
    assert tls["tls"]["client"]["server_name"] == "tls.lab.test"
    assert not [w for w in warnings if "protocol metadata" in w], warnings
    assert_ssh_matches_tshark(pcap, docs, cli.ip)


SSH_FIELDS = ("ip.src", "ssh.protocol", "ssh.kex.hassh", "ssh.kex.hasshserver", "ssh.kex_algorithms",
              "ssh.server_host_key_algorithms", "ssh.encryption_algorithms_client_to_server",
              "ssh.encryption_algorithms_server_to_client", "ssh.mac_algorithms_client_to_server",
              "ssh.mac_algorithms_server_to_client", "ssh.compression_algorithms_client_to_server",
              "ssh.host_key.type")


def assert_ssh_matches_tshark(pcap: Path, docs: list[dict], client_ip: str) -> None:
    """The native SSH reading of the port-80 connection equals tshark's SSH dissector told to decode port 80 as
    SSH (the differential oracle): banners, HASSH of both sides, the algorithms each side offered negotiated by
    RFC 4253 7.1, and the host key type."""
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-d", "tcp.port==80,ssh", "-Y",
                          "ssh.protocol or ssh.kex_algorithms or ssh.host_key.type", "-T", "fields", "-E",
                          "occurrence=f", *[arg for f in SSH_FIELDS for arg in ("-e", f)]],
                         check=True, capture_output=True, text=True).stdout
    client: dict[str, str] = {}
    server: dict[str, str] = {}
    for line in out.splitlines():
        values = dict(zip(SSH_FIELDS, line.split("\t"), strict=False))
        side = client if values["ip.src"] == client_ip else server
        side.update({k: v for k, v in values.items() if v and k not in side})

    def negotiated(name: str) -> str:
        offered = server[name].split(",")
        return next(alg for alg in client[name].split(",") if alg in offered)

    [ssh] = [d for d in docs if d["event"]["dataset"] == "secops.ssh" and d["destination"]["port"] == 80]
    got = ssh["secops"]["ssh"]
    assert (got["client"], got["server"]) == (client["ssh.protocol"], server["ssh.protocol"])
    assert (got["hassh"], got["hassh_server"]) == (client["ssh.kex.hassh"], server["ssh.kex.hasshserver"])
    assert got["kex_alg"] == negotiated("ssh.kex_algorithms")
    assert got["host_key_alg"] == negotiated("ssh.server_host_key_algorithms")
    assert got["cipher_alg"] == negotiated("ssh.encryption_algorithms_client_to_server")
    assert got["mac_alg"] == negotiated("ssh.mac_algorithms_client_to_server")
    assert got["compression_alg"] == negotiated("ssh.compression_algorithms_client_to_server")
    assert got["host_key_type"] == server["ssh.host_key.type"]
    assert len(got["host_key"]) == 47 and ssh["source"]["ip"] == client_ip  # MD5 as colon hex; oriented by SYN
