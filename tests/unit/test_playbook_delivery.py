"""notify's mail and syslog deliveries against real servers on loopback (aiosmtpd, a UDP socket)."""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from playbooks.delivery import send_mail, send_syslog
from playbooks.errors import ActionError
from secops.config import PlaybookSettings
from secops.devstack.stack import free_port


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages = []

    def handle_message(self, message) -> None:
        self.messages.append(message)


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def test_mail_reaches_a_real_smtp_server(smtp_server):
    controller, inbox = smtp_server
    settings = PlaybookSettings(smtp_host="127.0.0.1", smtp_port=controller.port, mail_from="secops@city.example")
    result = send_mail(settings, ["soc@city.example"], "secops: port scan", "198.18.0.66 scanned 300 ports", 5)
    assert result == {"mailed": ["soc@city.example"], "refused": []}
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["From"] == "secops@city.example" and msg["Subject"] == "secops: port scan"
    assert "198.18.0.66 scanned 300 ports" in msg.get_payload()


def test_mail_to_a_dead_server_is_a_clear_error():
    settings = PlaybookSettings(smtp_host="127.0.0.1", smtp_port=free_port())
    with pytest.raises(ActionError, match=r"SMTP 127\.0\.0\.1"):
        send_mail(settings, ["soc@city.example"], "s", "t", 2)


def test_syslog_line_is_rfc5424_over_udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        settings = PlaybookSettings(syslog_address=f"127.0.0.1:{sock.getsockname()[1]}")
        send_syslog(settings, "contain 198.18.0.66 approved by alice")
        line = sock.recv(4096).decode()
    assert line.startswith("<132>1 ") and line.endswith("secops - playbook - contain 198.18.0.66 approved by alice")
