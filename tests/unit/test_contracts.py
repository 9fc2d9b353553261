"""The kernel's typed records: each reads and writes its document or payload in one place, losslessly."""

from __future__ import annotations

import pytest

from collectors.conn import Observations
from collectors.scanning.nmap_xml import parse_file
from secops.contracts.alert import AlertRef
from secops.contracts.observation import Observation, ObservationKind
from secops.contracts.playbook import PlaybookRun, RunStatus, StepOutcome, StepStatus
from secops.contracts.scan import ScanResult, ScanSource
from tests.unit.test_observations import HOST, LOCAL, observe, udp_answered

RUN_DOC = {
    "@timestamp": "2026-11-20T10:00:00.000000Z",
    "event": {"dataset": "secops.playbook_run", "kind": "event", "ingested": "2026-11-20T10:00:00.000000Z"},
    "rule": {"id": "r1", "name": "Rule one"},
    "source": {"ip": "198.18.0.5"},
    "secops": {"playbook": {
        "run_id": "abc", "name": "gated", "alert_id": "a1", "dry_run": False, "status": "waiting_approval",
        "current": 1, "step": "block", "created": "2026-11-20T10:00:00.000000Z",
        "updated": "2026-11-20T10:00:05.000000Z", "actor": "playbooks",
        "approval": {"step": "block", "status": "waiting", "deadline": "2026-11-20T11:00:00.000000Z"},
        "steps": [
            {"name": "look", "action": "enrich", "status": "done", "attempts": 1, "action_key": "k0",
             "params": '{"address": "198.18.0.5"}', "dispatched_at": "2026-11-20T10:00:00.000000Z",
             "holder": "h", "started": "2026-11-20T10:00:01.000000Z", "finished": "2026-11-20T10:00:02.000000Z",
             "result": "{}"},
            {"name": "block", "action": "contain", "status": "waiting_approval", "attempts": 0, "action_key": "k1",
             "params": "{}", "dispatched_at": "2026-11-20T10:00:02.000000Z"},
        ]}},
}


def test_playbook_run_round_trips_its_document():
    run = PlaybookRun.from_doc(RUN_DOC)
    assert run.status is RunStatus.WAITING_APPROVAL and not run.status.terminal
    assert run.current_step.name == "block" and run.steps[0].status.finished
    assert run.to_doc() == RUN_DOC


def test_status_enums_name_every_state_once():
    terminal = {s for s in RunStatus if s.terminal}
    assert terminal == {"completed", "failed", "refused", "denied", "expired", "halted", "planned"}
    assert {s for s in StepStatus if s.finished} == {"done", "skipped", "failed"}
    assert {o for o in StepOutcome if o.resend} == {"retry", "busy"}


def test_a_run_document_from_a_newer_version_keeps_unknown_fields():
    doc = {**RUN_DOC, "secops": {"playbook": {**RUN_DOC["secops"]["playbook"], "ticket": "T-1"}}}
    assert PlaybookRun.from_doc(doc).to_doc()["secops"]["playbook"]["ticket"] == "T-1"


@pytest.mark.parametrize("name", ["libnmap/full_sudo6.xml", "libnmap/dionaea_scan.xml", "libnmap/os_scan6.xml"])
def test_scan_result_payload_round_trips(name, testdata):
    path = testdata / "nmap-xml" / name
    result = ScanResult(parse_file(path), ScanSource.IMPORT, f"import {path.name}", policy="weekly")
    payload = result.to_payload()
    assert payload["source"] == "import" and payload["policy"] == "weekly"
    assert ScanResult.from_payload(payload) == result


def test_observations_from_the_sensor_fit_the_contract():
    docs = observe(Observations("sensor-1"), [udp_answered(LOCAL, "198.18.0.20", HOST, HOST[:5] + b"\x09")])
    assert {d["secops"]["observation"]["kind"] for d in docs} == {"address", "service"}
    for doc in docs:
        assert Observation.from_doc(doc).to_doc() == doc
    service = next(Observation.from_doc(d) for d in docs if d["secops"]["observation"]["kind"] == "service")
    assert service.kind is ObservationKind.SERVICE and service.port == 53 and service.observer == "sensor-1"


def test_dhcp_observation_fits_the_contract():
    doc = {"_id": "x", "@timestamp": "2026-11-20T10:00:00Z",
           "event": {"dataset": "secops.observation", "kind": "event", "category": ["network"], "type": ["info"]},
           "host": {"ip": "198.18.0.9", "mac": "00:1b:1b:00:00:02", "hostname": "plc-9"},
           "secops": {"observation": {"kind": "dhcp", "source": "dhcp"}, "dhcp": {"vendor_class": "MSFT 5.0"}}}
    obs = Observation.from_doc(doc)
    assert obs.dhcp_vendor_class == "MSFT 5.0" and obs.hostname == "plc-9"
    assert obs.to_doc() == doc


def test_alert_ref_keeps_only_well_formed_values():
    hostile = {"rule": {"id": "r", "name": "n", "severity": "high"}, "tags": ["a", 3, None],
               "source": {"ip": "1" * 46}, "destination": "not a mapping"}
    ref = AlertRef.from_doc("al-1", hostile)
    assert ref.source_ip is None and ref.destination_ip is None and ref.tags == ("a",)
    assert ref.id == "al-1" and ref.fields is hostile
    assert AlertRef.missing("gone").fields == {}
