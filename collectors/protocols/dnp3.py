"""DNP3: one record per request/reply exchange, as Zeek's dnp3.log.

A request opens the record (a later request replaces its function code), the next response or
unsolicited response closes it; records never answered are logged when the capture ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collectors.protocols.base import Analyzer, RunContext, Warn, evict_oldest, flow_by_server_port
from collectors.protocols.documents import Flow, Written
from collectors.protocols.tshark import Packet, to_int

FUNCTIONS = {
    0: "CONFIRM", 1: "READ", 2: "WRITE", 3: "SELECT", 4: "OPERATE", 5: "DIRECT_OPERATE", 6: "DIRECT_OPERATE_NR",
    7: "IMMED_FREEZE", 8: "IMMED_FREEZE_NR", 9: "FREEZE_CLEAR", 10: "FREEZE_CLEAR_NR", 11: "FREEZE_AT_TIME",
    12: "FREEZE_AT_TIME_NR", 13: "COLD_RESTART", 14: "WARM_RESTART", 15: "INITIALIZE_DATA",
    16: "INITIALIZE_APPL", 17: "START_APPL", 18: "STOP_APPL", 19: "SAVE_CONFIG", 20: "ENABLE_UNSOLICITED",
    21: "DISABLE_UNSOLICITED", 22: "ASSIGN_CLASS", 23: "DELAY_MEASURE", 24: "RECORD_CURRENT_TIME",
    25: "OPEN_FILE", 26: "CLOSE_FILE", 27: "DELETE_FILE", 28: "GET_FILE_INFO", 29: "AUTHENTICATE_FILE",
    30: "ABORT_FILE", 31: "ACTIVATE_CONFIG", 32: "AUTHENTICATE_REQ", 33: "AUTHENTICATE_ERR",
    129: "RESPONSE", 130: "UNSOLICITED_RESPONSE", 131: "AUTHENTICATE_RESP",
}
CONTROLS = frozenset({3, 4, 5, 6})  # SELECT, OPERATE, DIRECT_OPERATE(_NR): operate outputs in the field
PORTS = frozenset({20000})


def name(code: int) -> str:
    return FUNCTIONS.get(code, f"unknown-{code}")


@dataclass(init=False)
class Exchange:
    flow: Flow
    ts: float
    request: int | None = None
    reply: int | None = None
    iin: int | None = None

    def __init__(self, flow: Flow, ts: float, request: int | None = None, reply: int | None = None,
                 iin: int | None = None) -> None:
        self.flow = flow
        self.ts = ts
        self.request = request
        self.reply = reply
        self.iin = iin


class Dnp3Analyzer(Analyzer):
    DATASET = "secops.dnp3"
    SERVICE = "dnp3"
    PORTS = PORTS
    LAYERS = frozenset({"dnp3"})
    FILTER = "dnp3.al.func"
    FIELDS = ("dnp3.al.func", "dnp3.al.iin", "dnp3.src", "dnp3.dst")

    def __init__(self, warn: Warn, context: RunContext | None = None) -> None:
        super().__init__(warn, context)
        self.open: dict[tuple[str, str], Exchange] = {}

    def handle(self, pkt: Packet) -> Iterable[Written]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow = oriented[0]
        key = flow.key()
        iins = iter(pkt.values("dnp3.al.iin"))
        for code in (to_int(v) for v in pkt.values("dnp3.al.func")):
            if code is None:
                continue
            ex = self.open.get(key) or Exchange(flow, pkt.ts)
            if code < 129:
                ex.request = code
                self.open[key] = ex
                for stale in evict_oldest(self.open):
                    yield self.emit(stale)
                continue
            ex.reply, ex.iin = code, to_int(next(iins, None))
            self.open.pop(key, None)
            yield self.emit(ex)

    def emit(self, ex: Exchange) -> Written:
        code = ex.request if ex.request is not None else ex.reply
        fields = {
            "secops.dnp3.fc_request": name(ex.request) if ex.request is not None else None,
            "secops.dnp3.fc_reply": name(ex.reply) if ex.reply is not None else None,
            "secops.dnp3.function_code": code,
            "secops.dnp3.function": name(code) if code is not None else None,
            "secops.dnp3.iin": ex.iin,
            "secops.dnp3.is_control": ex.request in CONTROLS,
        }
        return self.document(ex.flow, ex.ts, ("dnp3", ex.request, ex.reply), fields, self.SERVICE)

    def finish(self) -> Iterable[Written]:
        rest = sorted(self.open.values(), key=lambda e: e.ts)
        self.open.clear()
        for ex in rest:
            yield self.emit(ex)
        self.report_cuts()
