"""Hostile targets never start nmap: a real spy on process creation (a PEP 578 audit hook that sees every
subprocess.Popen / os.exec* / os.posix_spawn / os.system of this interpreter) around the real entry points
(the CLI, the Celery task function, the planner + runner). A positive control proves the spy sees nmap."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from collectors.scanning.runner import plan_scan, run_plan
from collectors.scanning.targets import TargetError
from secops.config import ScanningSettings

SPAWN_EVENTS = {"subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.fork"}
_spawned: list[tuple[str, str]] = []


def _hook(event: str, args: tuple) -> None:
    if event in SPAWN_EVENTS:
        _spawned.append((event, repr(args)[:300]))


sys.addaudithook(_hook)


@pytest.fixture
def spy():
    from secops.cli_support import state

    state._settings = None  # the CLI caches settings per process; each test brings its own config
    _spawned.clear()
    yield _spawned
    _spawned.clear()


def nmap_spawns(spawned: list[tuple[str, str]]) -> list[str]:
    return [a for _e, a in spawned if "nmap" in a]


HOSTILE = [
    "127.0.0.1,--script=http-title", "--script=broadcast-dhcp-discover", "-iL/etc/passwd", "-oN/tmp/pwned",
    "127.0.0.1 -sV", "127.0.0.1\n-oX", "127.0.0.1;touch /tmp/pwned", "$(id)", "`id`", "127.0.0.1|nc",
    "0.0.0.0/0", "198.18.0.1", "127.0.0.5", "127.0.0.4/30", "10.1.2.3", "-", "",
]

SCANNING = {"scopes": {"loopback": ["127.0.0.0/24"]}, "exclusions": ["127.0.0.4/30"], "host_timeout_seconds": 20}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "secops.yaml"
    path.write_text(yaml.safe_dump({"scanning": SCANNING, "paths": {"state_dir": str(tmp_path / "state")},
                                    "elasticsearch": {"hosts": ["http://127.0.0.1:9"]},
                                    "redis": {"url": "redis://127.0.0.1:9/0"}}))
    return path


@pytest.mark.parametrize("target", HOSTILE)
def test_cli_refuses_without_spawning(target, config, spy):
    from secops.cli import app

    result = CliRunner().invoke(app, ["--config", str(config), "scan", "--no-store", "--", target])
    assert result.exit_code != 0
    assert nmap_spawns(spy) == [], spy


@pytest.mark.parametrize("target", HOSTILE)
def test_planner_refuses_without_spawning(target, spy):
    with pytest.raises(TargetError):
        plan = plan_scan([target], "standard", ScanningSettings(**SCANNING))
        run_plan(plan)
    assert nmap_spawns(spy) == []


def test_task_refuses_without_spawning(config, spy, monkeypatch):
    from secops.config import get_settings

    monkeypatch.setenv("SECOPS_CONFIG", str(config))
    get_settings.cache_clear()
    try:
        from collectors.tasks import scan_targets

        for target in HOSTILE:
            result = scan_targets.run([target], "standard", "test")
            assert result["ok"] is False and result["error"]
        # one good target among hostile ones: the whole request is refused
        result = scan_targets.run(["127.0.0.1", "127.0.0.1,--script=x"], "standard", "test")
        assert result["ok"] is False
    finally:
        get_settings.cache_clear()
    assert nmap_spawns(spy) == []


def test_default_configuration_scans_nothing(tmp_path, spy):
    from secops.cli import app

    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump({"paths": {"state_dir": str(tmp_path / "state")}}))
    result = CliRunner().invoke(app, ["--config", str(path), "scan", "--no-store", "127.0.0.1"])
    assert result.exit_code != 0
    assert nmap_spawns(spy) == []


def test_positive_control_spy_sees_real_nmap(config, spy):
    """The same CLI path with an in-scope target does start nmap (so the spy can see it)."""
    from secops.cli import app

    result = CliRunner().invoke(app, ["--config", str(config), "scan", "--no-store", "--profile", "standard",
                                      "--ports", "9", "127.0.0.1"])
    assert result.exit_code == 0, result.output
    spawned = nmap_spawns(spy)
    assert any("'-oX', '-', '127.0.0.1'" in a for a in spawned), spawned
    assert all("shell=True" not in a for a in spawned)
    assert "1 hosts up" in result.output
    assert os.path.exists("/usr/bin/nmap")
