"""Modbus/TCP: one record per PDU (request or response), as Zeek's modbus.log."""

from __future__ import annotations

from collections.abc import Iterable

from collectors.protocols.base import Analyzer, flow_by_server_port
from collectors.protocols.documents import Written
from collectors.protocols.tshark import Packet, to_int

FUNCTIONS = {
    1: "READ_COILS", 2: "READ_DISCRETE_INPUTS", 3: "READ_HOLDING_REGISTERS", 4: "READ_INPUT_REGISTERS",
    5: "WRITE_SINGLE_COIL", 6: "WRITE_SINGLE_REGISTER", 7: "READ_EXCEPTION_STATUS", 8: "DIAGNOSTICS",
    11: "GET_COMM_EVENT_COUNTER", 12: "GET_COMM_EVENT_LOG", 15: "WRITE_MULTIPLE_COILS",
    16: "WRITE_MULTIPLE_REGISTERS", 17: "REPORT_SLAVE_ID", 20: "READ_FILE_RECORD", 21: "WRITE_FILE_RECORD",
    22: "MASK_WRITE_REGISTER", 23: "READ_WRITE_MULTIPLE_REGISTERS", 24: "READ_FIFO_QUEUE",
    43: "ENCAP_INTERFACE_TRANSPORT",
}
WRITES = frozenset({5, 6, 15, 16, 21, 22, 23})
EXCEPTIONS = {
    1: "ILLEGAL_FUNCTION", 2: "ILLEGAL_DATA_ADDRESS", 3: "ILLEGAL_DATA_VALUE", 4: "SLAVE_DEVICE_FAILURE",
    5: "ACKNOWLEDGE", 6: "SLAVE_DEVICE_BUSY", 8: "MEMORY_PARITY_ERROR", 10: "GATEWAY_PATH_UNAVAILABLE",
    11: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
}
PORTS = frozenset({502})


def function_name(raw: int) -> str:
    """Zeek's name: the function (exception bit cleared) when known, else ``unknown-<raw code>``."""
    name = FUNCTIONS.get(raw & 0x7F)
    if name is None:
        return f"unknown-{raw}"
    return name + ("_EXCEPTION" if raw & 0x80 else "")


class ModbusAnalyzer(Analyzer):
    DATASET = "secops.modbus"
    SERVICE = "modbus"
    PORTS = PORTS
    LAYERS = frozenset({"modbus"})
    FILTER = "modbus"
    FIELDS = ("mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code", "modbus.exception_code")

    def handle(self, pkt: Packet) -> Iterable[Written]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow, from_client = oriented
        tids, units, codes = (pkt.values(f) for f in ("mbtcp.trans_id", "mbtcp.unit_id", "modbus.func_code"))
        exceptions = pkt.values("modbus.exception_code")
        for i, code_text in enumerate(codes):
            raw = to_int(code_text)
            if raw is None:
                continue
            # tshark clears the exception bit in func_code and adds exception_code; Zeek logs the raw code
            exc = None
            if exceptions and (len(exceptions) == len(codes) or len(codes) == 1):
                exc = to_int(exceptions[i] if len(exceptions) == len(codes) else exceptions[0])
                raw |= 0x80
            tid = to_int(tids[i]) if i < len(tids) else None
            fields = {
                "secops.modbus.transaction_id": tid,
                "secops.modbus.unit_id": to_int(units[i]) if i < len(units) else None,
                "secops.modbus.function_code": raw & 0x7F,
                "secops.modbus.function": function_name(raw),
                "secops.modbus.pdu_type": "REQ" if from_client else "RESP",
                "secops.modbus.exception": EXCEPTIONS.get(exc, f"unknown-{exc}") if exc is not None else None,
                "secops.modbus.is_write": (raw & 0x7F) in WRITES,
                "event.outcome": "failure" if raw & 0x80 else None,
            }
            yield self.document(flow, pkt.ts, ("modbus", pkt.place, i), fields, self.SERVICE)
