"""The command line loads only what a command needs: `secops ingest --output ndjson` must not pay for the
Elasticsearch client, the console or the auditors' spreadsheet writer (0.55 s of a 2.5 s 1M-packet ingest)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import typer

from secops.cli import CONTEXT_COMMANDS, _command_name
from tests.support import TESTDATA

HEAVY = ("elasticsearch", "openpyxl", "cryptography", "celery", "fastapi")
REPORT_IMPORTS = (  # at exit, or at runtime.exit_now's os._exit (secops ingest leaves without atexit)
    "import atexit, os, sys\n"
    "def report():\n"
    f"    print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})), file=sys.stderr)\n"
    "    sys.stderr.flush()\n"
    "atexit.register(report)\n"
    "_exit = os._exit\n"
    "os._exit = lambda code: (report(), _exit(code))\n"
    "from secops.cli import main\n"
    "main()\n"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", REPORT_IMPORTS, *args], capture_output=True, text=True, timeout=120)


def _loaded(proc: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in proc.stderr.splitlines() if line.startswith("LOADED"))


def test_each_context_adds_exactly_the_commands_the_root_expects_of_it():
    for module, names in CONTEXT_COMMANDS.items():
        app = typer.Typer()
        importlib.import_module(module).register(app)
        added = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
        assert sorted(added) == sorted(names), module


def test_the_command_is_the_first_word_after_the_root_options():
    assert _command_name(["ingest", "a.pcap"]) == "ingest"
    assert _command_name(["--config", "x.yaml", "sensor", "run"]) == "sensor"
    assert _command_name(["-c", "ingest", "scan"]) == "scan"  # "ingest" is the config file's name here
    assert _command_name(["--config=x.yaml", "alerts"]) == "alerts"
    assert _command_name(["--help"]) is None


def test_ndjson_ingest_loads_neither_the_store_client_nor_the_console():
    pcap = TESTDATA / "zeek" / "traces" / "http" / "get.pcap"
    proc = _run("ingest", str(pcap), "--output", "ndjson")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"dataset":"secops.http"' in proc.stdout
    assert _loaded(proc) == "LOADED []"


def test_help_and_errors_still_know_every_command():
    proc = _run("--help")
    assert proc.returncode == 0
    for names in CONTEXT_COMMANDS.values():
        for name in names:
            assert f" {name} " in proc.stdout, name
    typo = _run("ingset")
    assert typo.returncode == 2 and "No such command 'ingset'" in typo.stderr
    assert "secops 0." in _run("--version").stdout


def test_a_store_error_is_still_one_clear_line(tmp_path):
    config = tmp_path / "secops.yaml"
    config.write_text("elasticsearch:\n  hosts: ['http://127.0.0.1:9']\n  request_timeout: 2\n")
    proc = _run("--config", str(config), "es", "indices")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
