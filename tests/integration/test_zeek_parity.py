"""The shared Zeek parity scorer over every trace: conn >= 95 % exact, dns/http/tls >= 90 % exact."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support import REPO, SHARED

pytestmark = pytest.mark.integration


def test_zeek_parity_thresholds() -> None:
    # the lean reader (python -m collectors.ingest) is the same Pipeline as `secops ingest --output ndjson`,
    # without the full CLI's import time per trace; test_ingest.py runs the real CLI
    env = dict(os.environ, SECOPS_PARITY_CMD=f"{sys.executable} -m collectors.ingest {{pcap}}")
    out = subprocess.run([sys.executable, str(SHARED / "tools" / "zeek_parity.py")], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=600, check=True).stdout
    last = out.strip().splitlines()[-1]
    rates = {k: (int(ok), int(n)) for k, ok, n in re.findall(r"(\w+) exact (\d+)/(\d+)", last)}
    assert "reader failures 0" in out, out
    assert set(rates) == {"conn", "dns", "http", "tls"}, last
    ok, n = rates["conn"]
    assert n >= 100 and ok / n >= 0.95, last
    for kind in ("dns", "http", "tls"):
        ok, n = rates[kind]
        assert n and ok / n >= 0.90, last
