"""`secops rules test --all`: every rule's SigmaHQ-style regression tests (info.yml) against the real node.

Each labelled capture is ingested once (`secops ingest`, a separate process) into a fresh index prefix,
every rule whose info.yml lists it runs over exactly that prefix, and the match counts and fields are
compared. The table is printed (pytest -s) and appended to $SECOPS_DETECT_RESULTS when set.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_every_rule_passes_its_regression_tests(config_file, testdata, es):
    env = {**os.environ, "SECOPS_CONFIG": str(config_file), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", "rules", "test", "--all",
                           "--testdata", str(testdata)], env=env, capture_output=True, text=True, timeout=1800)
    print(proc.stdout)
    if path := os.environ.get("SECOPS_DETECT_RESULTS"):
        with open(path, "a", encoding="utf-8") as f:
            f.write(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " 0 failed, 0 problems" in proc.stdout
    # every fresh prefix was removed again
    assert not es.indices.get(index="secops_rt*", allow_no_indices=True, expand_wildcards="all")
