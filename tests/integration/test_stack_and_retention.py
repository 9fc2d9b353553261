"""`secops stack up|status|down` with real processes, and retention on a core node without ILM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import pytest

from secops.devstack.stack import LocalStack
from secops.es import retention

pytestmark = pytest.mark.integration


def secops(*args: str, state: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECOPS_")}
    env["SECOPS_PATHS__STATE_DIR"] = str(state)
    return subprocess.run([sys.executable, "-m", "secops", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_stack_up_is_idempotent_and_status_says_where():
    state = Path(tempfile.mkdtemp(prefix="secops-test-stack-"))
    os.chmod(state, 0o755)
    try:
        first = secops("stack", "up", state=state)
        assert first.returncode == 0, first.stderr
        info = json.loads((state / "stack" / "stack.json").read_text())
        second = secops("stack", "up", state=state)
        assert second.returncode == 0, second.stderr
        assert json.loads((state / "stack" / "stack.json").read_text()) == info, "second `up` must reuse the stack"
        status = secops("stack", "status", state=state)
        assert info["elasticsearch"]["url"] in status.stdout and info["redis"]["url"] in status.stdout
        assert status.stdout.count("running") == 2
        # Issue 17.16: the pid shown is the server JVM's (not the runuser wrapper's or the CLI launcher's) ...
        jvm = info["elasticsearch"]["pid"]
        assert f" {jvm} " in status.stdout
        assert "org.elasticsearch.bootstrap.Elasticsearch" in Path(f"/proc/{jvm}/cmdline").read_text()
        node_processes = processes_mentioning(state)
        assert jvm in node_processes
        assert secops("stack", "down", state=state).returncode == 0
        # ... and `stack down` returns only once the node's processes have exited (its data lock is free)
        assert not Path(f"/proc/{jvm}").exists() and processes_mentioning(state) == set()
        assert LocalStack(state).status()["elasticsearch"]["running"] is False
        assert LocalStack(state).status()["redis"]["running"] is False
    finally:
        LocalStack(state).down()
        shutil.rmtree(state, ignore_errors=True)


def processes_mentioning(path: Path) -> set[int]:
    """Live processes whose command line or environment names this directory (the node, its launchers)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path).encode() in text and state != "Z":
            found.add(int(proc.name))
    return found


def test_retention_drops_only_expired_daily_indices(es, settings):
    for day in ("2026.10.01", "2026.11.01", "2026.11.20"):
        es.indices.create(index=f"secops-conn-{day}")
        es.indices.create(index=f"secops-dns-{day}")
    es.indices.create(index="secops-alert")  # stateful index: never touched by retention
    cfg = settings.retention.model_copy(update={"default_days": 30, "datasets": {"dns": 5}})
    plan = retention.apply(es, "secops", cfg, dry_run=True, today=date(2026, 11, 23))
    assert {d.index for d in plan if d.delete} == {"secops-conn-2026.10.01", "secops-dns-2026.10.01",
                                                   "secops-dns-2026.11.01"}
    assert es.indices.exists(index="secops-conn-2026.10.01"), "dry run deletes nothing"
    retention.apply(es, "secops", cfg, today=date(2026, 11, 23))
    left = set(es.indices.get(index="secops-*"))
    assert left == {"secops-conn-2026.11.01", "secops-conn-2026.11.20", "secops-dns-2026.11.20", "secops-alert"}
    assert retention.publish_ilm_policies(es, "secops", cfg) is False  # core node: no ILM API
