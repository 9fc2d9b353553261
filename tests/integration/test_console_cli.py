"""`secops users` and `secops console` as an operator runs them: accounts from standard input, the console
served over TLS with Secure cookies, a sign-in over HTTPS."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar
from urllib.parse import urlencode

import pytest

from secops.console.users import UserStore
from tests.support.console import audit_docs, free_port

pytestmark = pytest.mark.integration


def cli(config, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "secops", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "SECOPS_CONFIG": str(config),
                                            "SECOPS_ACTOR": "ops-admin", "COLUMNS": "200",
                                            "PYTHONPATH": sys.path[0] if sys.path[0] else "."}, check=False)


def test_users_commands(config_file, es, settings):
    prefix = settings.elasticsearch.index_prefix
    out = cli(config_file, "users", "add", "alice", "--role", "responder", stdin="a long enough secret\n")
    assert out.returncode == 0, out.stderr
    out = cli(config_file, "users", "add", "alice", "--role", "viewer", stdin="a long enough secret\n")
    assert out.returncode == 2 and "exists" in out.stderr
    out = cli(config_file, "users", "add", "bob", "--role", "superuser", stdin="a long enough secret\n")
    assert out.returncode == 2 and "role must be one of" in out.stderr
    assert cli(config_file, "users", "add", "carol", "--role", "viewer", stdin="short\n").returncode == 2
    store = UserStore(es, prefix)
    assert store.verify("alice", "a long enough secret") and not store.verify("alice", "wrong")
    assert "$argon2id$" in es.get(index=f"{prefix}-console_user", id="alice")["_source"]["password_hash"]
    assert cli(config_file, "users", "passwd", "alice", stdin="another long secret\n").returncode == 0
    assert store.verify("alice", "another long secret")
    assert cli(config_file, "users", "disable", "alice").returncode == 0
    assert store.verify("alice", "another long secret") is None
    listed = cli(config_file, "users", "list")
    assert re.search(r"alice\s+.*responder\s+.*disabled", listed.stdout), listed.stdout
    actions = {d["action"] for d in audit_docs(es, prefix, actor="ops-admin")}
    assert {"console.user.add", "console.user.passwd", "console.user.disable"} <= actions


def test_console_serves_https_with_secure_cookies(config_file, es, settings, tmp_path):
    key, cert = tmp_path / "console.key", tmp_path / "console.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    assert cli(config_file, "users", "add", "vic", "--role", "viewer", stdin="a long enough secret\n").returncode == 0
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "secops", "console", "--port", str(port), "--tls-cert", str(cert),
                             "--tls-key", str(key)], env={"PATH": "/usr/bin:/bin", "SECOPS_CONFIG": str(config_file),
                                                          "PYTHONPATH": sys.path[0] or "."},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                             urllib.request.HTTPCookieProcessor(jar))
        deadline = time.monotonic() + 60
        while True:
            try:
                page = opener.open(f"https://127.0.0.1:{port}/login", timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
                time.sleep(0.3)
        assert page.headers["Strict-Transport-Security"]
        token = re.search(r'name="csrf" value="([^"]+)"', page.read().decode()).group(1)
        res = opener.open(f"https://127.0.0.1:{port}/login", data=urlencode(
            {"name": "vic", "password": "a long enough secret", "csrf": token}).encode(), timeout=10)
        assert res.url.endswith("/") and "vic (viewer)" in res.read().decode()
        session = next(c for c in jar if c.name == "secops_session")
        assert session.secure and session.has_nonstandard_attr("HttpOnly")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
