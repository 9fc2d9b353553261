"""IEC 60870-5-104 (TCP 2404): one record per ASDU (I-format) and per U-format control function.

Type identifications 45-69 (process commands) and 100-107 (system commands: interrogation,
clock sync, reset process, ...) are commands sent to the outstation: ``is_command``.
"""

from __future__ import annotations

from collections.abc import Iterable

from collectors.protocols.base import Analyzer, flow_by_server_port
from collectors.protocols.documents import Written
from collectors.protocols.tshark import Packet, to_int

TYPES = {
    1: "M_SP_NA_1", 3: "M_DP_NA_1", 5: "M_ST_NA_1", 7: "M_BO_NA_1", 9: "M_ME_NA_1", 11: "M_ME_NB_1",
    13: "M_ME_NC_1", 15: "M_IT_NA_1", 20: "M_PS_NA_1", 21: "M_ME_ND_1", 30: "M_SP_TB_1", 31: "M_DP_TB_1",
    32: "M_ST_TB_1", 33: "M_BO_TB_1", 34: "M_ME_TD_1", 35: "M_ME_TE_1", 36: "M_ME_TF_1", 37: "M_IT_TB_1",
    38: "M_EP_TD_1", 39: "M_EP_TE_1", 40: "M_EP_TF_1", 45: "C_SC_NA_1", 46: "C_DC_NA_1", 47: "C_RC_NA_1",
    48: "C_SE_NA_1", 49: "C_SE_NB_1", 50: "C_SE_NC_1", 51: "C_BO_NA_1", 58: "C_SC_TA_1", 59: "C_DC_TA_1",
    60: "C_RC_TA_1", 61: "C_SE_TA_1", 62: "C_SE_TB_1", 63: "C_SE_TC_1", 64: "C_BO_TA_1", 70: "M_EI_NA_1",
    100: "C_IC_NA_1", 101: "C_CI_NA_1", 102: "C_RD_NA_1", 103: "C_CS_NA_1", 104: "C_TS_NA_1", 105: "C_RP_NA_1",
    106: "C_CD_NA_1", 107: "C_TS_TA_1", 110: "P_ME_NA_1", 111: "P_ME_NB_1", 112: "P_ME_NC_1", 113: "P_AC_NA_1",
    120: "F_FR_NA_1", 121: "F_SR_NA_1", 122: "F_SC_NA_1", 123: "F_LS_NA_1", 124: "F_AF_NA_1", 125: "F_SG_NA_1",
    126: "F_DR_TA_1",
}
CAUSES = {1: "per/cyc", 2: "back", 3: "spont", 4: "init", 5: "req", 6: "act", 7: "actcon", 8: "deact",
          9: "deactcon", 10: "actterm", 11: "retrem", 12: "retloc", 13: "file", 20: "inrogen", 44: "unknown_type",
          45: "unknown_cause", 46: "unknown_asdu_address", 47: "unknown_object_address"}
U_FUNCTIONS = {0x01: "STARTDT act", 0x02: "STARTDT con", 0x04: "STOPDT act", 0x08: "STOPDT con",
               0x10: "TESTFR act", 0x20: "TESTFR con"}
APCI = {0: "I", 1: "S", 3: "U"}
PORTS = frozenset({2404})


def is_command(type_id: int) -> bool:
    return 45 <= type_id <= 69 or 100 <= type_id <= 107


class Iec104Analyzer(Analyzer):
    DATASET = "secops.iec104"
    SERVICE = "iec104"
    PORTS = PORTS
    LAYERS = frozenset({"iec60870_104"})
    FILTER = "iec60870_104"
    FIELDS = ("iec60870_104.type", "iec60870_104.utype", "iec60870_asdu.typeid", "iec60870_asdu.causetx",
              "iec60870_asdu.addr")

    def handle(self, pkt: Packet) -> Iterable[Written]:
        oriented = flow_by_server_port(pkt, self.server_ports)
        if oriented is None:
            return
        flow = oriented[0]
        asdu_types = [to_int(t) for t in pkt.values("iec60870_asdu.typeid")]
        causes = [to_int(c) for c in pkt.values("iec60870_asdu.causetx")]
        addrs = [to_int(a) for a in pkt.values("iec60870_asdu.addr")]
        for i, type_id in enumerate(asdu_types):
            if type_id is None:
                continue
            cot = causes[i] if i < len(causes) else None
            fields = {
                "secops.iec104.apdu_type": "I",
                "secops.iec104.type_id": type_id,
                "secops.iec104.type": TYPES.get(type_id, f"unknown-{type_id}"),
                "secops.iec104.cot": cot,
                "secops.iec104.cause": CAUSES.get(cot & 0x3F, str(cot)) if cot is not None else None,
                "secops.iec104.common_address": addrs[i] if i < len(addrs) else None,
                "secops.iec104.is_command": is_command(type_id),
            }
            yield self.document(flow, pkt.ts, ("iec104", pkt.place, i), fields, self.SERVICE)
        utypes = [to_int(u) for u in pkt.values("iec60870_104.utype")]
        for j, utype in enumerate(u for u in utypes if u is not None):
            fields = {"secops.iec104.apdu_type": "U", "secops.iec104.type": U_FUNCTIONS.get(utype, f"U-{utype}"),
                      "secops.iec104.is_command": False}
            yield self.document(flow, pkt.ts, ("iec104-u", pkt.place, j), fields, self.SERVICE)
