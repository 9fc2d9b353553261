"""A QUIC server (aioquic) in a lab namespace and QUIC clients (aioquic) from the root namespace, captured on
the lab bridge: the C2-over-QUIC capture. Every packet stays between the bridge and the namespace."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.netns import Lab

PORT = 4433

SERVER = """
import asyncio, sys
from aioquic.asyncio import serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.events import StreamDataReceived

class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            self._quic.send_stream_data(event.stream_id, b"task:" + event.data, end_stream=event.end_stream)
            self.transmit()

async def main():
    config = QuicConfiguration(is_client=False, alpn_protocols=sys.argv[4].split(","))
    config.load_cert_chain(sys.argv[2], sys.argv[3])
    await serve(sys.argv[1], int(sys.argv[5]), configuration=config, create_protocol=Echo)
    await asyncio.Future()

asyncio.run(main())
"""

CLIENT = """
import asyncio, ssl, sys
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

async def once(host, port, alpn):
    config = QuicConfiguration(is_client=True, alpn_protocols=[alpn], verify_mode=ssl.CERT_NONE,
                               server_name="update.example")
    async with connect(host, port, configuration=config) as client:
        reader, writer = await client.create_stream()
        writer.write(b"beacon")
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 5)

async def main():
    for _ in range(int(sys.argv[4])):
        await once(sys.argv[1], int(sys.argv[2]), sys.argv[3])

asyncio.run(main())
"""


def quic_capture(path: Path, tmp: Path, clients: dict[str, int]) -> str:
    """Capture ``clients`` (ALPN -> connections) talking QUIC to a server in a namespace; returns its address."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=update.example", "-keyout", str(tmp / "key.pem"),
                    "-out", str(tmp / "cert.pem")], check=True, capture_output=True)
    with Lab() as lab:
        srv = lab.add_host("quic")
        srv.popen(sys.executable, "-c", SERVER, srv.ip, str(tmp / "cert.pem"), str(tmp / "key.pem"),
                  ",".join(clients), str(PORT))
        cap = subprocess.Popen(["dumpcap", "-q", "-P", "-i", lab.bridge, "-f", f"udp port {PORT}", "-w", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        for alpn, n in clients.items():
            proc = subprocess.run([sys.executable, "-c", CLIENT, srv.ip, str(PORT), alpn, str(n)],
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr[-2000:]
        time.sleep(1)
        cap.terminate()
        cap.wait(timeout=10)
        return srv.ip
