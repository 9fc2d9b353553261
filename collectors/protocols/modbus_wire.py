"""Modbus/TCP read from a connection's reassembled bytes, as tshark 4.0 dissects it on port 502.

:class:`ModbusReader` gives, for each TCP frame, the fields tshark prints for it (``mbtcp.trans_id``,
``mbtcp.unit_id``, ``modbus.func_code``, ``modbus.exception_code``, one value per PDU the frame completes), so that
``ModbusAnalyzer`` makes the same documents from either reader. tshark's behaviour reproduced here:

- Where a segment's fresh bytes begin (no PDU under reassembly), they are Modbus only if at least 8 bytes are there,
  the protocol identifier is 0 and the length field is at least 2 (unit identifier and function code); otherwise the
  rest of the segment is data (nothing logged).
- From there, PDUs follow one another by their length field (6 + length bytes) without that check, as
  ``tcp_dissect_pdus`` walks them. A PDU that does not end in the segment waits for the next ones and is reported in
  the frame that completes it; the bytes after it in that frame are fresh again.
- Each PDU of the walk is logged only if it passes that check too (tshark skips it and walks on); one that announces
  an exception (the function code's high bit) without the exception code's byte is skipped as well.
- The function code is logged without its exception bit; the exception code only when that bit is set and the code
  is not 0.

A hole in the stream ends what was under reassembly in that direction. The length field is 16 bits, so at most
65,541 bytes wait per direction.
"""

from __future__ import annotations

MIN_FRESH = 8  # bytes tshark wants at a segment's fresh start before it calls it Modbus/TCP
HEADER = 6  # transaction id, protocol id, length: what tells a PDU's size


class _Side:
    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""  # the start of a PDU waiting for the rest of its bytes (b"": none)


class ModbusReader:
    """One Modbus/TCP connection, both directions; ``feed`` a frame's chunks, then ``take`` that frame's fields."""

    __slots__ = ("exceptions", "functions", "sides", "transactions", "units")

    def __init__(self) -> None:
        self.sides = (_Side(), _Side())  # from the client, from the server
        self.transactions: list[str] = []
        self.units: list[str] = []
        self.functions: list[str] = []
        self.exceptions: list[str] = []

    def feed(self, from_client: bool, chunk: bytes | int) -> None:
        """Reassembled bytes of one direction in sequence order (an int: a hole of that many bytes)."""
        side = self.sides[0 if from_client else 1]
        if isinstance(chunk, int):
            side.pending = b""
            return
        data = chunk
        if side.pending:
            data = side.pending + chunk
            side.pending = b""
            if len(data) < HEADER:
                side.pending = data
                return
            end = HEADER + int.from_bytes(data[4:6], "big")
            if len(data) < end:
                side.pending = data
                return
            self._pdu(data[:end])
            data = data[end:]
        self._fresh(side, data)

    def _fresh(self, side: _Side, data: bytes) -> None:
        """A segment's bytes with no PDU under reassembly: Modbus only if they look like it (tshark's check)."""
        if len(data) < MIN_FRESH or data[2] or data[3] or int.from_bytes(data[4:6], "big") < 2:
            return
        at, size = 0, len(data)
        while at < size:
            if size - at < HEADER:
                side.pending = data[at:]
                return
            end = at + HEADER + int.from_bytes(data[at + 4:at + 6], "big")
            if end > size:
                side.pending = data[at:]
                return
            self._pdu(data[at:end])
            at = end

    def _pdu(self, pdu: bytes) -> None:
        """One PDU of the walk: logged whole or not at all (tshark skips one that fails its check, or that announces
        an exception without its code, and walks on by the length field)."""
        if len(pdu) < 8 or pdu[2] or pdu[3]:
            return
        code = pdu[7]
        if code & 0x80:
            if len(pdu) < 9:
                return
            if pdu[8]:
                self.exceptions.append(str(pdu[8]))
        self.transactions.append(str(int.from_bytes(pdu[0:2], "big")))
        self.units.append(str(pdu[6]))
        self.functions.append(str(code & 0x7F))

    def take(self) -> dict[str, list[str]]:
        """The fields of the PDUs completed since the last call, keyed as tshark's EK output keys them."""
        if not self.transactions:
            return {}
        fields = {"mbtcp_trans_id": self.transactions, "mbtcp_unit_id": self.units,
                  "modbus_func_code": self.functions}
        if self.exceptions:
            fields["modbus_exception_code"] = self.exceptions
        self.transactions, self.units, self.functions, self.exceptions = [], [], [], []
        return fields
