"""The flow path's shared constants: one table for the Python decoder and flow table and the C core.

``collectors._flowcore`` compiles its own copies (C needs them at compile time); ``FlowCore.constants()``
returns them by these names and tests/unit/test_flowcore.py requires ``SHARED`` and that dict to be equal.
"""

from __future__ import annotations

from typing import Final

# IP protocol numbers
ICMP: Final = 1
TCP: Final = 6
UDP: Final = 17
ICMP6: Final = 58
SCTP: Final = 132

# TCP flags
F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# TCP endpoint states (Zeek's TCP_ENDPOINT_*)
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

# timers (ns), Zeek's defaults
NS = 1_000_000_000
TCP_INACTIVITY = 300 * NS
UDP_INACTIVITY = 60 * NS
ICMP_INACTIVITY = 60 * NS
ATTEMPT_DELAY = 5 * NS
CLOSE_DELAY = 5 * NS
RESET_DELAY = 5 * NS
SWEEP_EVERY = 10 * NS

TOO_LARGE_SEQ_DELTA = 1048576
HISTORY_MAX = 1023  # letters kept per connection (bounded memory)
REPROBES = 32  # payloads after detection probed for an upgrade to another protocol (STARTTLS)
MAX_DEPTH = 4  # nested encapsulations followed

# UDP ports whose payload is a tunnel (Zeek's default tunnel ports)
VXLAN_PORT, GENEVE_PORT, TEREDO_PORT, GTPU_PORT, AYIYA_PORT, GRE_UDP_PORT = 4789, 6081, 3544, 2152, 5072, 4754

SHARED: dict[str, int] = {
    name: value for name, value in globals().items() if name.isupper() and isinstance(value, int)
}
