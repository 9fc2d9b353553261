"""Siemens S7comm (ISO-TSAP/COTP, TCP 102): one record per S7 PDU, as the icsnpp-s7comm s7comm.log.

Job functions (read/write variables, block upload/download, PLC stop, PI service) and user-data
functions (function group + subfunction, e.g. CPU functions / Read SZL). Downloads, PI services
(start, compress, delete blocks) and PLC stop change the program or run state of the PLC and set
``is_program_change``.
"""

from __future__ import annotations

from collections.abc import Iterable

from collectors.protocols.base import Analyzer, flow_by_server_port
from collectors.protocols.documents import Written
from collectors.protocols.tshark import Packet, to_int

ROSCTR = {1: "Job-Request", 2: "ACK", 3: "ACK-Data", 7: "User-Data"}
JOB_FUNCTIONS = {
    0x00: "CPU Services", 0xF0: "Setup Communication", 0x04: "Read Variable", 0x05: "Write Variable",
    0x1A: "Request Download", 0x1B: "Download Block", 0x1C: "Download Ended", 0x1D: "Start Upload",
    0x1E: "Upload", 0x1F: "End Upload", 0x28: "PLC Control", 0x29: "PLC Stop",
}
PROGRAM_CHANGES = frozenset({0x1A, 0x1B, 0x1C, 0x28, 0x29})
UD_TYPES = {0: "Push", 4: "Request", 8: "Response", 3: "NC Push", 7: "NC Request", 11: "NC Response"}
UD_GROUPS = {0: "Mode-transition", 1: "Programmer commands", 2: "Cyclic data", 3: "Block Functions",
             4: "CPU Functions", 5: "Security", 6: "PBC BSEND/BRECV", 7: "Time Functions", 15: "NC Programming"}
UD_SUBFUNCTIONS = {
    3: {1: "List Blocks", 2: "List Blocks of Type", 3: "Get Block Info"},
    4: {1: "Read SZL", 2: "Message Service", 3: "Diagnostic Message", 5: "ALARM_8 Indication",
        6: "NOTIFY Indication", 7: "ALARM_8 Lock", 8: "ALARM_8 Unlock", 11: "ALARM Ack", 12: "ALARM Ack Indication",
        13: "ALARM Lock Indication", 14: "ALARM Unlock Indication", 17: "ALARM_SQ Indication",
        18: "ALARM_S Indication", 19: "ALARM Query", 22: "NOTIFY_8 Indication"},
    7: {1: "Read Clock", 2: "Set Clock", 3: "Read Clock (following)", 4: "Set Clock 2"},
    5: {1: "PLC Password", 2: "Clean Session"},
    1: {1: "Request Diag Data (Type 1)", 2: "VarTab", 12: "Erase", 14: "Read Diag Data", 15: "Remove Diag Data",
        16: "Forces", 19: "Request Diag Data (Type 2)"},
}
PI_SERVICES = {"_MODU": "PLC Copy Ram to Rom", "_GARB": "Compress PLC memory", "P_PROGRAM": "PLC Start / Stop",
               "_INSE": "Activate downloaded block", "_DELE": "Delete block", "_EXE": "Execute", "_N_": "NC program"}
ERROR_CLASSES = {0x00: "No error", 0x81: "Application relationship", 0x82: "Object definition",
                 0x83: "No resources available", 0x84: "Error on service processing", 0x85: "Error on supplies",
                 0x87: "Access error"}
PORTS = frozenset({102})


class S7commAnalyzer(Analyzer):
    DATASET = "secops.s7comm"
    SERVICE = "s7comm"
    PORTS = PORTS
    LAYERS = frozenset({"s7comm"})
    FILTER = "s7comm"
    FIELDS = (
        "s7comm.header.rosctr", "s7comm.header.pduref", "s7comm.header.errcls", "s7comm.header.errcod",
        "s7comm.param.func", "s7comm.param.userdata.type", "s7comm.param.userdata.funcgroup",
        "s7comm.param.userdata.subfunc", "s7comm.param.errcod", "s7comm.param.pistart.servicename",
    )

    def handle(self, pkt: Packet) -> Iterable[Written]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow, from_client = oriented
        rosctr = pkt.int("s7comm.header.rosctr")
        if rosctr is None:
            return
        fields: dict = {
            "secops.s7comm.is_orig": from_client,
            "secops.s7comm.rosctr_code": rosctr,
            "secops.s7comm.rosctr": ROSCTR.get(rosctr, f"unknown-{rosctr}"),
            "secops.s7comm.pdu_reference": pkt.int("s7comm.header.pduref"),
        }
        if rosctr == 7:
            kind, group = pkt.int("s7comm.param.userdata.type"), pkt.int("s7comm.param.userdata.funcgroup")
            sub = pkt.int("s7comm.param.userdata.subfunc")
            if kind is not None and group is not None:
                fields["secops.s7comm.function_code"] = f"0x{(kind << 4) | group:02x}"
                fields["secops.s7comm.function"] = f"{UD_TYPES.get(kind, kind)}: {UD_GROUPS.get(group, group)}"
            if sub is not None:
                fields["secops.s7comm.subfunction_code"] = f"0x{sub:02x}"
                fields["secops.s7comm.subfunction"] = UD_SUBFUNCTIONS.get(group or 0, {}).get(sub, f"unknown-{sub}")
            err = pkt.int("s7comm.param.errcod")
            if err is not None and kind == 8:
                fields["secops.s7comm.error_code"] = f"0x{err:04x}"
                fields["secops.s7comm.error_class"] = "No error" if err == 0 else "Parameter Error"
        else:
            func = pkt.int("s7comm.param.func")
            if func is not None:
                fields["secops.s7comm.function_code"] = f"0x{func:02x}"
                fields["secops.s7comm.function"] = JOB_FUNCTIONS.get(func, f"unknown-{func}")
                fields["secops.s7comm.is_program_change"] = rosctr == 1 and func in PROGRAM_CHANGES
                service = pkt.first("s7comm.param.pistart.servicename")
                if func == 0x28 and service:
                    fields["secops.s7comm.subfunction_code"] = service
                    fields["secops.s7comm.subfunction"] = PI_SERVICES.get(service, service)
            errcls = pkt.int("s7comm.header.errcls")
            if errcls is not None:
                fields["secops.s7comm.error_class"] = ERROR_CLASSES.get(errcls, f"0x{errcls:02x}")
                fields["secops.s7comm.error_code"] = f"0x{to_int(pkt.first('s7comm.header.errcod'), 0):02x}"
        fields.setdefault("secops.s7comm.is_program_change", False)
        yield self.document(flow, pkt.ts, ("s7comm", pkt.place), fields, self.SERVICE)
