"""Configuration: validation, environment overrides, redaction, one-line errors from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from secops.config import ConfigError, load_settings, redacted


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SECOPS_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "secops", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=60)


def test_defaults_scan_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.scanning.scopes == {} and s.scanning.policies == []


def test_yaml_and_environment_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "secops.yaml"
    cfg.write_text("elasticsearch:\n  hosts: [http://127.0.0.1:1]\nbulk:\n  batch_docs: 10\n")
    monkeypatch.setenv("SECOPS_BULK__BATCH_DOCS", "20")
    s = load_settings(cfg)
    assert s.elasticsearch.hosts == ["http://127.0.0.1:1"]
    assert s.bulk.batch_docs == 20


@pytest.mark.parametrize(("text", "expected"), [
    ("elasticsearch:\n  hostz: [x]\n", "elasticsearch.hostz: unknown key"),
    ("bulk:\n  batch_docs: many\n", "bulk.batch_docs: Input should be a valid integer"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("bulk: [\n", "not valid YAML"),
    ("scanning:\n  policies:\n    - name: 'x;rm'\n      scope: a\n", "scanning.policies.0.name"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, expected):
    cfg = tmp_path / "secops.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_settings(cfg)
    proc = run_cli("--config", str(cfg), "config", "show", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr
    assert expected.split(":")[0] in lines[0]


def test_unreachable_node_is_one_clear_line(tmp_path):
    cfg = tmp_path / "secops.yaml"
    cfg.write_text("elasticsearch:\n  hosts: ['http://127.0.0.1:9']\n  request_timeout: 2\n")
    proc = run_cli("--config", str(cfg), "config", "check", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: Elasticsearch unreachable at http://127.0.0.1:9: ConnectionError"]


def test_secrets_redacted(tmp_path):
    cfg = tmp_path / "secops.yaml"
    cfg.write_text("elasticsearch:\n  username: elastic\n  password: hunter2\n  api_key: k3y\n")
    assert "hunter2" not in str(redacted(load_settings(cfg)))
    proc = run_cli("--config", str(cfg), "config", "show", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hunter2" not in proc.stdout and "k3y" not in proc.stdout and "elastic" in proc.stdout


# -- URL userinfo (issue 17 item 14) ----------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:r3dispw@redis:6379/0", "redis://***@redis:6379/0"),
    ("https://elastic:es-pw@es01:9200", "https://***@es01:9200"),
    ("https://user:p@ss@es01:9200/x", "https://***@es01:9200/x"),
    ("rediss://default:pw@h:6380/0?ssl_cert_reqs=required&password=qpw", "rediss://***@h:6380/0?ssl_cert_reqs=required&password=***"),
    ("https://es01:9200", "https://es01:9200"),
    ("failed at https://u:pw@a:1 and redis://:pw@b:2/0.", "failed at https://***@a:1 and redis://***@b:2/0."),
])
def test_redact_text(url, shown):
    from secops.config import redact_text

    assert redact_text(url) == shown


def test_url_passwords_never_printed_from_file_or_environment(tmp_path):
    cfg = tmp_path / "secops.yaml"
    cfg.write_text("elasticsearch:\n  hosts: ['https://elastic:FilePw1@127.0.0.1:9']\n  request_timeout: 2\n"
                   "kibana:\n  url: https://kibana:KibPw2@127.0.0.1:9\n")
    env = {"SECOPS_REDIS__URL": "redis://:EnvPw3@127.0.0.1:9/0"}
    for args in (("config", "show"), ("config", "show", "--json")):
        proc = run_cli("--config", str(cfg), *args, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert not {"FilePw1", "KibPw2", "EnvPw3"} & set(proc.stdout.replace('"', " ").replace("@", " ").split()) \
            and "Pw" not in proc.stdout, proc.stdout
        assert "redis://***@127.0.0.1:9/0" in proc.stdout and "https://***@127.0.0.1:9" in proc.stdout
    env["SECOPS_ELASTICSEARCH__HOSTS"] = '["https://elastic:EnvPw4@127.0.0.1:9"]'
    proc = run_cli("--config", str(cfg), "config", "show", cwd=tmp_path, env=env)
    assert "EnvPw4" not in proc.stdout and "https://***@127.0.0.1:9" in proc.stdout
    proc = run_cli("--config", str(cfg), "kibana", "import", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Pw" not in proc.stdout + proc.stderr, proc.stderr


def test_log_records_are_redacted(tmp_path):
    import logging

    from secops.config import install_log_redaction

    log_file = tmp_path / "log.txt"
    logger = logging.getLogger("secops-test-redaction")
    logger.propagate = False
    handler = logging.FileHandler(log_file)
    logger.addHandler(handler)
    install_log_redaction(logger)
    try:
        logger.warning("broker %s unreachable", "redis://:LogPw5@127.0.0.1:9/0")
        try:
            raise ConnectionError("cannot reach https://elastic:LogPw6@127.0.0.1:9")
        except ConnectionError:
            logger.exception("request failed")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = log_file.read_text()
    assert "LogPw" not in text and "redis://***@127.0.0.1:9/0" in text and "https://***@127.0.0.1:9" in text
