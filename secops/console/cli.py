"""`secops console` (serve the SOC console) and `secops users` (console accounts); registered by secops.cli."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from secops.audit import current_actor, write_audit
from secops.cli_support import console, es_client, fail, settings

users_app = typer.Typer(help="Console accounts: add, list, disable, enable, passwd, role.", no_args_is_help=True)
ROLES = "viewer|analyst|responder|admin|auditor"


def register(app: typer.Typer) -> None:
    """Add the console's commands to the root app."""
    from secops.console.cases_cli import cases_app

    app.add_typer(users_app, name="users")
    app.add_typer(cases_app, name="cases")
    app.command("console")(serve)


def _store():  # type: ignore[no-untyped-def]
    from secops.console.users import UserStore

    store = UserStore(es_client(), settings().elasticsearch.index_prefix)
    store.ensure()
    return store


def _password(confirm: bool = True) -> str:
    """The password from standard input: prompted twice on a terminal, else the first line."""
    if sys.stdin.isatty():
        first = typer.prompt("password", hide_input=True)
        if confirm and typer.prompt("again", hide_input=True) != first:
            fail("the passwords differ")
        return first
    line = sys.stdin.readline()
    if not line:
        fail("no password on standard input")
    return line.rstrip("\r\n")


def _do(action: str, name: str, fn, **details: str) -> None:  # type: ignore[no-untyped-def]
    from secops.console.users import UserError

    try:
        fn()
    except UserError as exc:
        fail(str(exc))
    write_audit(es_client(check=False), settings().elasticsearch.index_prefix, action, name, "success",
                details={"via": "cli", **details})


@users_app.command("add")
def add(name: Annotated[str, typer.Argument(help="User name")],
        role: Annotated[str, typer.Option("--role", help=ROLES)]) -> None:
    """Create a console account; the password is read from standard input (argon2id hash stored)."""
    store = _store()
    password = _password()
    _do("console.user.add", name, lambda: store.add(name, role, password), role=role, actor=current_actor())
    console.print(f"user {name} added ({role})", highlight=False)


@users_app.command("list")
def list_() -> None:
    """Every console account with its role and state."""
    table = Table("name", "role", "state", "language", "created")
    for u in _store().list():
        table.add_row(u.name, u.role.value, "disabled" if u.disabled else "active", u.lang or "-", u.created)
    console.print(table)


@users_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="User name")]) -> None:
    """Disable an account and end its sessions."""
    store = _store()
    _do("console.user.disable", name, lambda: store.set_disabled(name, True))
    console.print(f"user {name} disabled; sessions ended", highlight=False)


@users_app.command("enable")
def enable(name: Annotated[str, typer.Argument(help="User name")]) -> None:
    """Enable a disabled account."""
    store = _store()
    _do("console.user.enable", name, lambda: store.set_disabled(name, False))
    console.print(f"user {name} enabled", highlight=False)


@users_app.command("passwd")
def passwd(name: Annotated[str, typer.Argument(help="User name")]) -> None:
    """Set a new password (from standard input) and end the user's sessions."""
    store = _store()
    password = _password()
    _do("console.user.passwd", name, lambda: store.set_password(name, password))
    console.print(f"password of {name} changed; sessions ended", highlight=False)


@users_app.command("role")
def role(name: Annotated[str, typer.Argument(help="User name")],
         new_role: Annotated[str, typer.Argument(help=ROLES)]) -> None:
    """Change a user's role and end the user's sessions."""
    store = _store()
    _do("console.user.role", name, lambda: store.set_role(name, new_role), role=new_role)
    console.print(f"user {name} is now {new_role}; sessions ended", highlight=False)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8443,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate (chain)")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key")] = None,
    insecure_cookies: Annotated[bool, typer.Option(
        "--insecure-cookies", help="Session cookies without Secure although TLS ends at a proxy in front")] = False,
) -> None:
    """Serve the SOC console (alerts, approvals, PCAP, assets). Offline: every asset ships with the package.
    The Chinese interface (简体中文) is chosen per user in the console."""
    import uvicorn

    from secops.console.app import create_app

    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together")
    for f in (tls_cert, tls_key):
        if f and not f.is_file():
            fail(f"not a file: {f}")
    app = create_app(settings(), es_client(), secure_cookies=bool(tls_cert) and not insecure_cookies)
    scheme = "https" if tls_cert else "http"
    console.print(f"secops console on {scheme}://{host}:{port}/", highlight=False)
    uvicorn.run(app, host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None, log_level="info", proxy_headers=False,
                server_header=False)
