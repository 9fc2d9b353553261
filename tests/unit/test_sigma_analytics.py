"""Network analytics scoring and IOC parsing (pure logic; the ES side is in integration tests)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from detections.analytics import beacon_score, beacon_severity, entropy, registered_domain
from detections.ioc import ioc_query, load_iocs


def test_periodic_connections_score_high_and_random_ones_low():
    rng = random.Random(7)
    periodic = [i * 5.0 + rng.uniform(-0.2, 0.2) for i in range(40)]
    assert beacon_score(periodic)[0] >= 0.8
    bursty = sorted(rng.expovariate(1 / 30) * i for i in range(40))
    assert beacon_score(bursty)[0] < 0.8
    assert beacon_score([1.0, 2.0, 3.0])[0] == 0.0  # too few connections


def test_beacon_score_weighs_sizes_coverage_and_count_as_rita_does():
    rng = random.Random(11)
    times = [i * 60.0 + rng.uniform(-1, 1) for i in range(60)]  # an hour of one-minute beacons
    span = times[-1] - times[0]
    steady, stats = beacon_score(times, [420.0] * 60, span)
    assert steady >= 0.9 and beacon_severity(steady) == "high"
    assert stats["size"] > 0.99 and stats["coverage"] == 1.0 and stats["count"] == 1.0
    # the same timing with bulk transfers of varying size: regular, but not a beacon's data profile
    varied = beacon_score(times, [rng.uniform(5e4, 6.5e4) * rng.choice([1, 3, 9]) for _ in times], span)[0]
    assert varied < steady and beacon_severity(varied) != "high"
    # a short regular burst inside a day of observation covers little of it: a near miss
    burst = [i * 2.0 for i in range(12)]
    short, stats = beacon_score(burst, [300.0] * 12, 86400.0)
    assert stats["coverage"] < 0.01 and beacon_severity(short) in (None, "low")
    assert [beacon_severity(x) for x in (0.95, 0.85, 0.75, 0.5)] == ["high", "medium", "low", None]


def test_entropy_and_domains():
    assert entropy("aaaa") == 0.0
    assert entropy("ab") == 1.0
    assert registered_domain("X1.Y2.Pirate.SEA.") == "pirate.sea"


def test_ioc_lists_and_stix_bundle(tmp_path: Path):
    (tmp_path / "ips.txt").write_text("# comment\n198.51.100.7\n203.0.113.0/24\nevil.example\nnot an ioc!\n"
                                      "e7d705a3286e19ea42f587b344ee6865\n")
    bundle = {"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": [{
        "type": "indicator", "spec_version": "2.1", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z", "pattern_type": "stix",
        "pattern": "[domain-name:value = 'c2.bad.test'] OR [ipv4-addr:value = '192.0.2.66']",
        "valid_from": "2024-01-01T00:00:00Z"}]}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    (tmp_path / "broken.json").write_text("{not json")
    iocs = load_iocs([tmp_path])
    assert iocs.ips == {"198.51.100.7", "203.0.113.0/24", "192.0.2.66"}
    assert iocs.domains == {"evil.example", "c2.bad.test"}
    assert iocs.ja3 == {"e7d705a3286e19ea42f587b344ee6865"}
    assert any("not an ioc" in e for e in iocs.errors)
    assert any("broken.json" in e for e in iocs.errors)
    assert ioc_query(iocs)["bool"]["minimum_should_match"] == 1


def test_fingerprint_lists_shipped_then_files_later_entries_win(tmp_path: Path):
    from detections.fingerprints import load_fingerprints

    shipped = load_fingerprints()
    assert not shipped.errors and len(shipped) >= 10
    assert shipped.entries["t13d201100_2b729b4bf6f3_9e7b989ebec8"].severity == "high"  # IcedID (FoxIO)
    assert shipped.entries["t13d190900_9dc949149365_97f8aa674fd9"].severity == "low"  # Go's own: Sliver shares it
    site = tmp_path / "site.csv"
    site.write_text("# ours\nT13D190900_9dc949149365_97f8aa674fd9,Sliver agent,high,no Go clients here\n"
                    "e7d705a3286e19ea42f587b344ee6865,some JA3,critical\n"
                    "e7d705a3286e19ea42f587b344ee6866,,high\nabc,bad,high\n"
                    "e7d705a3286e19ea42f587b344ee6867,x,urgent\n")
    listed = load_fingerprints([site, tmp_path / "missing.csv"])
    assert listed.entries["t13d190900_9dc949149365_97f8aa674fd9"].severity == "high"
    assert listed.entries["e7d705a3286e19ea42f587b344ee6865"].severity == "critical"
    assert len(listed) == len(shipped) + 1 and len(listed.errors) == 4
