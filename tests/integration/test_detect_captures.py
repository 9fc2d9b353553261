"""Detection accuracy on labelled captures, ingested for real with `secops ingest --output es`.

Each labelled capture must raise an alert of its class; the benign Zeek test traces must raise no
high or critical alert. Results per capture are printed as a table (pytest -s) and written to
$SECOPS_DETECT_RESULTS when set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from detections.alerts import AlertStore
from detections.pack import build_pack
from detections.scheduler import Scheduler
from secops.config import load_settings
from secops.ecs import parse_time
from secops.es.client import make_client
from secops.es.templates import install_templates
from tests.support.services import write_config

pytestmark = pytest.mark.integration

PORT_SCAN = {"f238ed5e-f87f-5430-b0f1-5f5dc591ff0f", "4fd2cc3a-a833-50ea-86fe-025d642a53c1",
             "a30e547f-a430-5bb0-b898-46c02b1647d9", "ec62bd08-434e-5043-93d5-12512d848149"}
DNS_TUNNEL = {"e7a17506-4105-55bf-adac-09a18bb95a41", "b9c67dc9-fde2-529a-a5e1-f8edd2ab6306",
              "secops-analytic-dns-tunnel"}
SERVICE_CREATION = {"24e688c5-144e-5c29-9d44-a52e73cd78c6"}
BEACONING = {"secops-analytic-beaconing"}
BRUTE_FORCE = {"7fd810cf-9665-519e-80c1-1dded37bd56f", "9a8f1f7e-2f1c-5d47-8a43-0e4f0f6c2b55"}
ICS = {"c6a7c1cd-5e42-5ef9-b976-b4c0ea122d2c", "889c663d-3e66-5133-87a9-bc8c6fe868ae",
       "dd0d84e4-39a7-5959-ab09-82a133a4aa0f", "5e8f4a77-91a8-5acc-b00b-be4b4291b779",
       "5bb0ba66-2a6e-571b-86a4-01d446cd388a", "e9eb9c87-6767-5c2b-89f6-b82c9013d8b4",
       "7a71b874-7534-5242-8bf5-300bd901858d", "0f3b8d4e-6a1c-5c2e-9b7d-2e8f4a6c1d33"}

CASES = [
    ("scans/nmap_80_vanilla.pcap", [PORT_SCAN]),
    ("scans/nmap_80_w_service_detection.pcap", [PORT_SCAN]),
    ("dns-tunnel/dns-tunnel-iodine.pcap", [DNS_TUNNEL]),
    ("lateral-movement/empire_smbexec_dcerpc_smb_svcctl_WORKSTATION5_2020-09-20025716.pcap",
     [SERVICE_CREATION, BEACONING]),
    ("lateral-movement/empire_psexec_dcerpc_tcp_svcctl_WORKSTATION5_2020-09-20121608.pcap",
     [SERVICE_CREATION, BEACONING]),
    ("bruteforce/ftp-bruteforce.pcap", [BRUTE_FORCE]),
    ("ics/dnp3/dnp3.pcap", [ICS]),
    ("ics/dnp3/dnp3_select_operate.pcap", [ICS]),
    ("ics/modbus/modbus-eit.pcap", [ICS]),
    ("ics/modbus/fuzz-72.pcap", [ICS]),
    ("ics/s7comm/s7comm_plus.pcap", [ICS]),
    ("ics/s7comm/snap7.pcap", [ICS]),
]


def ingest(config_file: Path, pcaps: list[Path]) -> None:
    env = {**os.environ, "SECOPS_CONFIG": str(config_file)}
    proc = subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", "ingest",
                           *map(str, pcaps), "--output", "es"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"secops ingest failed: {proc.stderr[-2000:]}"


def detect(settings, es) -> list[dict]:
    es.indices.refresh(index="secops-*")
    pack = build_pack(settings)
    store = AlertStore(es, settings.elasticsearch.index_prefix, settings.detections.suppression_seconds,
                       notifier=None)
    runs = Scheduler(es, settings, pack.runnable, alerts=store).run()
    failed = [(r.rule_id, r.error) for r in runs if r.error]
    assert not failed, failed
    return store.list(size=1000)


def time_range(pcap: Path) -> tuple[float, float]:
    """First and last packet time of a capture (capinfos, Wireshark's own tool)."""
    out = subprocess.run(["capinfos", "-T", "-r", "-a", "-e", "-S", str(pcap)], capture_output=True, text=True,
                         timeout=60, check=True)
    first, last = out.stdout.strip().split("\t")[-2:]
    return float(first), float(last)


def _record(line: str) -> None:
    print(line)
    if path := os.environ.get("SECOPS_DETECT_RESULTS"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@pytest.fixture(scope="module")
def labelled_alerts(es_node, tmp_path_factory, testdata) -> list[dict]:
    """All labelled captures ingested in one `secops ingest` run, one detection pass (their times never overlap)."""
    tmp = tmp_path_factory.mktemp("captures")
    settings = load_settings(None, elasticsearch={"hosts": [es_node.url]},
                             paths={"state_dir": str(tmp / "state"), "cache_dir": str(tmp / "cache")})
    es = make_client(settings)
    es.indices.delete(index="secops-*", allow_no_indices=True, expand_wildcards="all")
    install_templates(es, settings.elasticsearch.index_prefix)
    ingest(write_config(settings, tmp / "secops.yaml"), [testdata / "attacks" / c for c, _ in CASES])
    return detect(settings, es)


@pytest.mark.parametrize(("capture", "expected"), CASES, ids=[Path(c).name[:40] for c, _ in CASES])
def test_labelled_capture_raises_its_alert(labelled_alerts, testdata, capture, expected):
    lo, hi = time_range(testdata / "attacks" / capture)
    mine = [a for a in labelled_alerts
            if parse_time(a["secops"]["alert"]["first_time"]).timestamp() <= hi + 1
            and parse_time(a["secops"]["alert"]["last_time"]).timestamp() >= lo - 1]
    fired = {a["rule"]["id"] for a in mine}
    names = sorted({f"{a['rule']['name']} ({a['rule']['severity']})" for a in mine})
    ok = all(fired & group for group in expected)
    _record(f"| {capture} | {'PASS' if ok else 'FAIL'} | {'; '.join(names) or '-'} |")
    for group in expected:
        assert fired & group, f"{capture}: expected one of {sorted(group)}, got {names}"


def known_false_positives(testdata: Path) -> dict[str, dict[Path, str]]:
    """rule id -> {benign capture: why the rule may fire there}, from the rules' info.yml files."""
    from detections.analytics import analytic_rules
    from detections.compiler import compile_rules
    from detections.loader import BUILTIN_RULES, load_rules
    from detections.regression import collect

    files, problems = collect(compile_rules(load_rules([BUILTIN_RULES])) + analytic_rules(), testdata)
    assert not problems, problems
    return {rule_id: {testdata / k: v for k, v in f.known_false_positives.items()}
            for f in files for rule_id in f.rule_ids if f.known_false_positives}


def test_benign_zeek_traces_raise_no_medium_alert(settings, es, config_file, testdata):
    """The false-positive baseline: every benign Zeek trace together raises no medium-or-higher alert, except
    rules whose info.yml lists the trace under known_false_positives (with the reason)."""
    traces = sorted(p for p in (testdata / "zeek").rglob("*") if p.suffix in (".pcap", ".trace", ".pcapng"))
    assert len(traces) >= 40
    ingest(config_file, traces)
    alerts = detect(settings, es)
    allowed = known_false_positives(testdata)
    unexplained, explained = set(), set()
    for a in alerts:
        if a["rule"]["severity"] not in ("medium", "high", "critical"):
            continue
        first = parse_time(a["secops"]["alert"]["first_time"]).timestamp()
        last = parse_time(a["secops"]["alert"]["last_time"]).timestamp()
        why = [reason for trace, reason in allowed.get(a["rule"]["id"], {}).items()
               if time_range(trace)[0] - 1 <= first and last <= time_range(trace)[1] + 1]
        line = f"{a['rule']['name']} ({a['rule']['severity']}) {a.get('source', {}).get('ip')}"
        (explained if why else unexplained).add(line + (f": known FP, {why[0]}" if why else ""))
    names = sorted({f"{a['rule']['name']} ({a['rule']['severity']})" for a in alerts})
    _record(f"| zeek/ ({len(traces)} benign traces) | {'PASS' if not unexplained else 'FAIL'} | "
            f"{'; '.join(names) or 'no alerts'} | known FPs: {'; '.join(sorted(explained)) or 'none'} |")
    assert not unexplained, sorted(unexplained)


def test_rules_test_command_ingests_a_capture_and_reports_matches(config_file, testdata, settings):
    env = {**os.environ, "SECOPS_CONFIG": str(config_file)}
    base = [sys.executable, "-c", "from secops.cli import main; main()", "rules", "test"]
    pcap = str(testdata / "attacks" / "bruteforce" / "ftp-bruteforce.pcap")
    hit = subprocess.run([*base, "FTP Brute Force", pcap], env=env, capture_output=True, text=True, timeout=600)
    assert hit.returncode == 0, hit.stderr
    assert "MATCH" in hit.stdout and "192.168.56.1" in hit.stdout
    miss = subprocess.run([*base, "Modbus Write Command", pcap], env=env, capture_output=True, text=True, timeout=600)
    assert miss.returncode == 1 and "0 match(es)" in miss.stdout
