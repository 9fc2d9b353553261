"""Attack classes added for issue 12, each with a near miss that must stay quiet, on the real node:
SSH password guessing from connection shape, host sweeps over any transport, generated domains (DGA)."""

from __future__ import annotations

import random
import string
from datetime import timedelta
from pathlib import Path

import pytest

from detections.analytics import analytic_rules
from detections.dga import looks_generated
from detections.engine import run_rule
from tests.integration.detect_support import T0, conn, event, write
from tests.integration.test_detect_hardening import WINDOW, builtin

pytestmark = pytest.mark.integration
SSH_GUESSING = "0c5e7f9a-1b2d-5e3f-8a4c-6d7e8f9a0b12"
HOST_SWEEP = "ec62bd08-434e-5043-93d5-12512d848149"


def ssh(src: str, at, orig: int, resp: int, seconds: float, state: str = "SF") -> dict:
    return conn(src, "198.18.40.22", 22, at, state=state, orig_bytes=orig, ingested=T0,
                event={"dataset": "secops.conn", "kind": "event", "duration": int(seconds * 1e9),
                       "ingested": T0.isoformat()},
                network={"transport": "tcp", "protocol": "ssh"},
                secops={"conn": {"state": state, "orig_bytes": orig, "resp_bytes": resp}})


def test_ssh_password_guessing_from_connection_shape(es, settings):
    guesses = [ssh("198.18.40.1", T0 + timedelta(seconds=20 * i), 1400 + i, 2900, 3.5) for i in range(12)]
    mistyped = [ssh("198.18.40.2", T0 + timedelta(seconds=30 * i), 1400, 2900, 4.0) for i in range(2)]
    sessions = [ssh("198.18.40.3", T0 + timedelta(minutes=i), 90_000, 2_500_000, 600) for i in range(12)]
    write(es, settings, guesses + mistyped + sessions)
    matches = run_rule(es, "secops", builtin(SSH_GUESSING), *WINDOW)
    assert [m.group["source.ip"] for m in matches] == ["198.18.40.1"]
    assert "12 events within 1800s" in matches[0].reason


def test_host_sweep_over_udp_icmp_and_icmpv6_not_multicast(es, settings):
    def udp(src: str, dst: str, i: int) -> dict:
        return conn(src, dst, 161, T0 + timedelta(seconds=i), state="S0", ingested=T0, transport="udp",
                    destination={"ip": dst, "port": 161, "packets": 0})

    udp_sweep = [udp("198.18.41.1", f"198.18.42.{i}", i) for i in range(1, 31)]
    icmp6_sweep = [conn("2001:db8::1", f"2001:db8::1:{i:x}", 129, T0 + timedelta(seconds=i), state="OTH",
                        ingested=T0, transport="ipv6-icmp", source={"ip": "2001:db8::1", "port": 128})
                   for i in range(1, 26)]
    timestamp_sweep = [conn("198.18.41.3", f"198.18.43.{i}", 14, T0 + timedelta(seconds=i), state="OTH",
                            ingested=T0, transport="icmp", source={"ip": "198.18.41.3", "port": 13})
                       for i in range(1, 26)]
    multicast = [udp("198.18.41.4", f"239.255.0.{i}", i) for i in range(1, 31)]  # group traffic, not probes
    few = [udp("198.18.41.5", f"198.18.44.{i}", i) for i in range(1, 11)]  # ten hosts: below the threshold
    write(es, settings, udp_sweep + icmp6_sweep + timestamp_sweep + multicast + few)
    matches = run_rule(es, "secops", builtin(HOST_SWEEP), *WINDOW)
    assert sorted(m.group["source.ip"] for m in matches) == ["198.18.41.1", "198.18.41.3", "2001:db8::1"]


def dga_names(seed: int, n: int) -> list[str]:
    """A Conficker-style generator: date-seeded pseudo-random letters, 8-12 characters, a few TLDs."""
    rng = random.Random(seed)
    return [f"{''.join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(8, 12)))}."
            f"{rng.choice(['com', 'net', 'org', 'info', 'biz'])}" for _ in range(n)]


def test_generated_domains_alert_dictionary_names_and_a_few_odd_ones_do_not(es, settings):
    words = [w.strip().lower() for w in Path("/usr/share/dict/words").read_text().splitlines()
             if w.strip().isalpha() and w.strip().isascii() and len(w.strip()) >= 5]
    rng = random.Random(5)
    dictionary = [f"www.{rng.choice(words)}{rng.choice(words)}.org" for _ in range(40)]
    generated = dga_names(20261129, 15)
    assert sum(map(looks_generated, generated)) >= 13 and sum(map(looks_generated, dictionary)) <= 2

    def lookups(src: str, names: list[str]) -> list[dict]:
        return [event("secops.dns", src, "198.18.45.53", T0 + timedelta(seconds=i),
                      {"dns.question.name": n, "dns.question.type": "A", "dns.response_code": "NXDOMAIN"},
                      ingested=T0) for i, n in enumerate(names)]

    write(es, settings, lookups("198.18.45.1", generated) + lookups("198.18.45.2", dictionary)
          + lookups("198.18.45.3", dga_names(7, 3)))
    dga = next(r for r in analytic_rules() if r.id == "secops-analytic-dga")
    matches = run_rule(es, "secops", dga, *WINDOW)
    assert [m.group["source.ip"] for m in matches] == ["198.18.45.1"]
    assert "distinct generated-looking domains" in matches[0].reason


def ssh_guessing_capture(path: Path, connections: int, guesses_per_connection: int, tmp: Path) -> str:
    """A real capture: sshd in a namespace, `ssh` (via sshpass) from the root namespace with wrong passwords.
    Returns the client address (the lab bridge)."""
    import subprocess
    import time

    from tests.support.netns import Lab

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "hostkey")], check=True)
    with Lab() as lab:
        srv = lab.add_host("ssh")
        (tmp / "sshd_config").write_text(
            f"ListenAddress {srv.ip}\nHostKey {tmp / 'hostkey'}\nPasswordAuthentication yes\nUsePAM no\n"
            f"KbdInteractiveAuthentication no\nPermitRootLogin yes\nMaxAuthTries {guesses_per_connection}\n"
            f"PidFile {tmp / 'sshd.pid'}\n")
        Path("/run/sshd").mkdir(exist_ok=True)
        srv.popen("/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config"))
        cap = subprocess.Popen(["dumpcap", "-q", "-P", "-i", lab.bridge, "-w", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        for i in range(connections):
            proc = subprocess.run(["sshpass", "-p", f"wrong-{i}", "ssh", "-o", "StrictHostKeyChecking=no",
                                   "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no",
                                   "-o", "PreferredAuthentications=password",
                                   "-o", f"NumberOfPasswordPrompts={guesses_per_connection}", f"admin@{srv.ip}",
                                   "true"], capture_output=True, text=True, timeout=60)
            assert "Permission denied" in proc.stderr or "authentication failures" in proc.stderr, proc.stderr
        time.sleep(1)
        cap.terminate()
        cap.wait(timeout=10)
        return lab.gateway


def test_ssh_password_guessing_lab_capture_and_one_mistyped_password(es, settings, config_file, tmp_path):
    from tests.integration.test_detect_captures import ingest

    rule = builtin(SSH_GUESSING)
    window = ("1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z")
    mistyped = tmp_path / "mistyped.pcap"
    (tmp_path / "a").mkdir()
    ssh_guessing_capture(mistyped, 1, 1, tmp_path / "a")
    ingest(config_file, [mistyped])
    es.indices.refresh(index="secops-*")
    assert run_rule(es, "secops", rule, *window) == []
    es.indices.delete(index="secops-*", expand_wildcards="all")
    guessing = tmp_path / "guessing.pcap"
    (tmp_path / "b").mkdir()
    client = ssh_guessing_capture(guessing, 12, 3, tmp_path / "b")
    ingest(config_file, [guessing])
    es.indices.refresh(index="secops-*")
    matches = run_rule(es, "secops", rule, *window)
    assert [m.group["source.ip"] for m in matches] == [client] and matches[0].count == 12
