"""Maintenance windows and policy due-ness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.scanning.policy import PolicyError, is_due, parse_window
from secops.config import ScanPolicy

MON_23 = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize("spec,when,inside", [
    ("Mon-Fri 22:00-06:00", MON_23, True),
    ("Mon-Fri 22:00-06:00", MON_23 + timedelta(hours=6), True),  # Tue 05:00, window from Monday
    ("Mon-Fri 22:00-06:00", MON_23 + timedelta(hours=8), False),  # Tue 07:00
    ("Mon-Fri 22:00-06:00", MON_23 + timedelta(days=4, hours=3), True),  # Sat 02:00, from Friday night
    ("Mon-Fri 22:00-06:00", MON_23 + timedelta(days=6), False),  # Sun 23:00
    ("Sat,Sun 00:00-24:00", MON_23 + timedelta(days=5, hours=2), True),
    ("Sat,Sun 00:00-24:00", MON_23, False),
    ("daily 01:00-03:00", MON_23 + timedelta(hours=3), True),
    ("12:00-13:00", MON_23, False),
    ("Fri-Mon 10:00-11:00", datetime(2026, 11, 22, 10, 30, tzinfo=UTC), True),  # Sunday, wraps the week
])
def test_windows(spec, when, inside):
    assert parse_window(spec).contains(when) is inside


@pytest.mark.parametrize("spec", ["Mon-Fri", "Funday 10:00-11:00", "10:00-10:00", "25:00-26:00", "rm -rf /"])
def test_bad_windows(spec):
    with pytest.raises(PolicyError):
        parse_window(spec)


def test_due():
    pol = ScanPolicy(name="p", scope="lab", every_minutes=60, maintenance_windows=["Mon-Fri 22:00-06:00"])
    assert is_due(pol, None, MON_23)
    assert not is_due(pol, MON_23 - timedelta(minutes=30), MON_23)
    assert is_due(pol, MON_23 - timedelta(minutes=61), MON_23)
    assert not is_due(pol, None, MON_23 - timedelta(hours=12))  # Monday 11:00, outside the window
    assert is_due(ScanPolicy(name="q", scope="lab"), None, MON_23)  # no windows: always


def test_policies_cli_lists_windows_and_bad_ones(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from secops.cli import app
    from secops.cli_support import state

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "elasticsearch": {"hosts": ["http://127.0.0.1:9"]}, "paths": {"state_dir": str(tmp_path)},
        "scanning": {"scopes": {"lab": ["198.18.200.0/24"]}, "policies": [
            {"name": "nightly", "scope": "lab", "ports": "22,80", "maintenance_windows": ["Mon-Fri 22:00-06:00"]},
            {"name": "broken", "scope": "lab", "maintenance_windows": ["whenever"]}]}}))
    state._settings = None
    result = CliRunner().invoke(app, ["--config", str(cfg), "scan", "policies"], env={"COLUMNS": "250"})
    state._settings = None
    assert result.exit_code == 0, result.output
    assert "nightly" in result.output and "Mon-Fri 22:00-06:00" in result.output
    assert "expected e.g." in result.output  # the broken window is reported, not ignored
