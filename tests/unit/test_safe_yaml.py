"""The one safe YAML loader: hostile YAML (bombs, tags, duplicate keys, oversized) is refused fast and in one
line, for every kind of file the product reads (rules, playbooks, configuration)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secops import safe_yaml
from secops.config import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]


def billion_laughs(indent: str = "") -> str:
    lines = [f'{indent}a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{indent}{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


BOMB_PLAYBOOK = ("name: bomb\nsteps:\n  - name: s\n    action: notify\n    params:\n      channel: syslog\n"
                 "      message: hi\n" + billion_laughs("      "))


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECOPS_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", "from secops.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def test_billion_laughs_playbook_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB_PLAYBOOK)
    assert len(BOMB_PLAYBOOK.encode()) < 640
    started = time.monotonic()
    proc = cli(tmp_path, "playbooks", "validate", str(bomb))
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert elapsed < 10, elapsed  # main took over 60 s (validation walked 9**9 shared references)
    out = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert "Traceback" not in out
    assert re.search(r"bomb\.yaml: YAML anchors/aliases are not allowed .*\(line 8\)", out), out


def test_billion_laughs_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "secops.yaml").write_text("bulk:\n  batch_docs: 5\n" + billion_laughs())
    proc = cli(tmp_path, "config", "show")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "alias" in lines[0] and "secops.yaml" in lines[0], proc.stderr


@pytest.mark.parametrize(("text", "reason"), [
    (billion_laughs(), "anchors/aliases are not allowed"),
    ("a: *undefined\n", "aliases are not allowed"),
    ("a: !!python/object/apply:os.system ['id']\n", "tag:yaml.org,2002:python/object/apply:os.system' not allowed"),
    ("a: !custom 1\n", "tag '!custom' not allowed"),
    ("action: notify\nname: x\naction: contain\n", "duplicate key 'action' not allowed (line 3)"),
    ("a:\n  b: 1\n  b: 2\n", "duplicate key 'b'"),
    ("a: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 24 levels"),
    ("- 1\n" * 20_001, "more than 20000 YAML nodes"),
    ("a: [unclosed\n", "not valid YAML"),
])
def test_hostile_yaml_is_refused_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(safe_yaml.UnsafeYaml) as err:
        safe_yaml.load_all(text, "input.yaml")
    message = str(err.value)
    assert message.startswith("input.yaml: ") and reason in message and "\n" not in message, message


def test_size_limit_is_checked_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * safe_yaml.MAX_BYTES + b"\n")
    with pytest.raises(safe_yaml.UnsafeYaml, match=r"big\.yaml: file larger than 262144 bytes"):
        safe_yaml.load_file(big)
    with pytest.raises(safe_yaml.UnsafeYaml, match="larger than"):
        safe_yaml.load(big.read_text())
    with pytest.raises(safe_yaml.UnsafeYaml, match="not UTF-8"):
        safe_yaml.load(b"a: \xff\xfe\n", "latin1.yaml")


def test_plain_yaml_still_loads() -> None:
    assert safe_yaml.load("a: 1\nb: [x, {c: true}]\nd: 2026-11-23\n")["b"] == ["x", {"c": True}]
    assert safe_yaml.load("") is None
    assert safe_yaml.load_all("---\na: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]
    with pytest.raises(safe_yaml.UnsafeYaml, match="expected one YAML document, found 2"):
        safe_yaml.load("---\na: 1\n---\nb: 2\n")


def test_shipped_yaml_loads_and_config_goes_through_the_guard(tmp_path: Path) -> None:
    shipped = [*REPO.glob("detections/rules/**/*.yml"), *REPO.glob("playbooks/definitions/*.yaml"),
               REPO / "secops.example.yaml"]
    assert len(shipped) > 10
    for path in shipped:
        safe_yaml.load_all(path.read_bytes(), str(path))
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("bulk:\n  batch_docs: 5\nbulk:\n  batch_docs: 50000\n")
    with pytest.raises(ConfigError, match="duplicate key 'bulk'"):
        load_settings(cfg)


def test_every_yaml_read_in_the_product_goes_through_safe_yaml() -> None:
    """No module but secops/safe_yaml.py parses YAML itself (dumping is fine)."""
    parse = re.compile(r"\byaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all|compose|compose_all"
                       r"|parse|SafeLoader|FullLoader|Loader|UnsafeLoader|CSafeLoader|CLoader)\b")
    offenders = []
    for package in ("secops", "collectors", "detections", "inventory", "playbooks"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "safe_yaml.py":
                continue
            offenders += [f"{path.relative_to(REPO)}:{n}" for n, line in
                          enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if parse.search(line)]
    assert not offenders, offenders
