#!/usr/bin/env python3
"""The analyzer child (``collectors.protocols.deep_process``) with natively read HTTP done by the Python reference
(``http_native.RUST = False``): the peer of an A/B measurement of the Rust HTTP engine.

    python3 benchmarks/deep_child_python_http.py NAME TSHARK < CHILD_INPUT > OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.protocols import deep_process, http_native

if __name__ == "__main__":
    http_native.RUST = False
    sys.exit(deep_process.main(*sys.argv[1:3]))
