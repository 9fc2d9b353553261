"""The ICS severity ladder (issue 12) over every shipped ICS rule on the real node: identification and reads
informational, writes medium, program download/upload and stop/start high, for Modbus, DNP3, S7comm and
IEC 60870-5-104. One record per operation, each from its own client, so every alert names its operation;
the labelled captures prove the same rules in their regression files (secops rules test --all)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from detections.compiler import compile_rules
from detections.engine import run_rule
from detections.loader import BUILTIN_RULES, load_rules
from tests.integration.detect_support import T0, event, write
from tests.integration.test_detect_hardening import WINDOW

pytestmark = pytest.mark.integration
RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3}
ACT, ACTCON = 6, 7

# (dataset, fields, ladder level) per operation
OPERATIONS: list[tuple[str, dict, str]] = [
    ("secops.modbus", {"secops.modbus.function_code": 3, "secops.modbus.function": "READ_HOLDING_REGISTERS"},
     "informational"),
    ("secops.modbus", {"secops.modbus.function_code": 43, "secops.modbus.function": "ENCAP_INTERFACE_TRANSPORT"},
     "informational"),
    ("secops.modbus", {"secops.modbus.function_code": 16, "secops.modbus.is_write": True}, "medium"),
    ("secops.modbus", {"secops.modbus.function_code": 8, "secops.modbus.function": "DIAGNOSTICS"}, "medium"),
    ("secops.dnp3", {"secops.dnp3.function_code": 1, "secops.dnp3.function": "READ"}, "informational"),
    ("secops.dnp3", {"secops.dnp3.function_code": 2, "secops.dnp3.function": "WRITE"}, "medium"),
    ("secops.dnp3", {"secops.dnp3.function_code": 5, "secops.dnp3.function": "DIRECT_OPERATE",
                     "secops.dnp3.is_control": True}, "medium"),
    ("secops.dnp3", {"secops.dnp3.function_code": 18, "secops.dnp3.function": "STOP_APPL"}, "high"),
    ("secops.dnp3", {"secops.dnp3.function_code": 25, "secops.dnp3.function": "OPEN_FILE"}, "high"),
    ("secops.s7comm", {"secops.s7comm.function_code": "0x04", "secops.s7comm.function": "Read Variable"},
     "informational"),
    ("secops.s7comm", {"secops.s7comm.function_code": "0x44", "secops.s7comm.function": "Request: CPU Functions",
                       "secops.s7comm.subfunction": "Read SZL"}, "informational"),
    ("secops.s7comm", {"secops.s7comm.function_code": "0x05", "secops.s7comm.function": "Write Variable"}, "medium"),
    ("secops.s7comm", {"secops.s7comm.function_code": "0x1a", "secops.s7comm.function": "Request Download",
                       "secops.s7comm.is_program_change": True}, "high"),
    ("secops.s7comm", {"secops.s7comm.function_code": "0x29", "secops.s7comm.function": "PLC Stop",
                       "secops.s7comm.is_program_change": True}, "high"),
    ("secops.iec104", {"secops.iec104.type_id": 100, "secops.iec104.cot": ACT}, "informational"),
    ("secops.iec104", {"secops.iec104.type_id": 45, "secops.iec104.cot": ACT}, "medium"),
    ("secops.iec104", {"secops.iec104.type_id": 63, "secops.iec104.cot": ACT}, "medium"),
    ("secops.iec104", {"secops.iec104.type_id": 105, "secops.iec104.cot": ACT}, "high"),
    ("secops.iec104", {"secops.iec104.type_id": 122, "secops.iec104.cot": 13}, "high"),
]


def test_every_ics_operation_gets_its_ladder_level_and_confirmations_none(es, settings):
    docs = [event(dataset, f"198.18.60.{n + 1}", "198.18.61.1", T0 + timedelta(seconds=n), fields, ingested=T0)
            for n, (dataset, fields, _) in enumerate(OPERATIONS)]
    # an outstation confirming a command (actcon) is not a second command
    docs.append(event("secops.iec104", "198.18.60.200", "198.18.61.1", T0,
                      {"secops.iec104.type_id": 45, "secops.iec104.cot": ACTCON}, ingested=T0))
    write(es, settings, docs)
    ics = [r for r in compile_rules(load_rules([BUILTIN_RULES / "ics"])) if r.runnable]
    levels: dict[str, list[str]] = {}
    for rule in ics:
        for m in run_rule(es, "secops", rule, *WINDOW):
            levels.setdefault(str(m.group.get("source.ip") or m.fields.get("source.ip")), []).append(rule.level)
    got = {n: max(levels.get(f"198.18.60.{n + 1}", ["none"]), key=lambda x: RANK.get(x, -1))
           for n in range(len(OPERATIONS))}
    want = {n: level for n, (_, _, level) in enumerate(OPERATIONS)}
    assert got == want
    assert "198.18.60.200" not in levels
