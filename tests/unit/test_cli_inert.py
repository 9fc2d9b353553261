"""Values from documents and scanned hosts print literally in the CLI tables: no Rich markup, no terminal escape
sequences (`secops scan` summaries; the alert and playbook tables are covered against the store in
tests/integration/test_cli_tables.py)."""

from __future__ import annotations

from rich.console import Console

from collectors.scanning import cli as scan_cli
from collectors.scanning.nmap_xml import parse_bytes

HOSTILE = "[red]x[/red]\x1b[2J"
SHOWN = "[red]x[/red][2J"  # the markup as text; ESC (and every other control character) dropped

XML = """<?xml version="1.0"?><nmaprun scanner="nmap" args="nmap -sV 198.18.0.5" start="1700000000">
<host><status state="up" reason="echo-reply"/><address addr="198.18.0.5" addrtype="ipv4"/>
<hostnames><hostname name="placeholder" type="PTR"/></hostnames>
<ports><port protocol="tcp" portid="80"><state state="open" reason="syn-ack"/><service name="http"/></port></ports>
<os><osmatch name="Linux 5.X" accuracy="95"/></os></host>
<runstats><finished time="1700000001"/><hosts up="1" down="0" total="1"/></runstats></nmaprun>"""


def test_scan_summary_prints_hostile_host_values_literally(monkeypatch):
    report = parse_bytes(XML)
    host = report.live_hosts[0]
    host.hostnames = [HOSTILE]
    host.ports[0].service.name = HOSTILE
    host.os_matches[0].name = HOSTILE
    # a console of our own: patching the shared console's width property would leave it fixed after the test
    monkeypatch.setattr(scan_cli, "console", Console(width=300))
    with scan_cli.console.capture() as out:
        scan_cli._summary(report, f"nmap import: {HOSTILE}")
    text = out.get()
    assert "\x1b" not in text
    assert text.count(SHOWN) == 4  # title, hostname, the port's service, the OS guess
    assert f"80/tcp {SHOWN}" in text
