"""What every console endpoint shares: the application state, the signed-in request context, the permission
check (with CSRF and audit), and template rendering in the user's language."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from elasticsearch import Elasticsearch
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from secops.audit import write_audit
from secops.config import Settings
from secops.console.alerts import AlertQueue
from secops.console.i18n import Texts, negotiate, translations
from secops.console.roles import Perm, allowed
from secops.console.users import LoginThrottle, Session, UserStore

SESSION_COOKIE = "secops_session"
LOGIN_CSRF_COOKIE = "secops_login_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
HERE = Path(__file__).parent


class LoginRequired(Exception):
    """No live session: pages redirect to the login form, the API answers 401."""


@dataclass
class ConsoleState:
    settings: Settings
    es: Elasticsearch
    users: UserStore
    throttle: LoginThrottle
    secure_cookies: bool
    templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(
            ["html"], default_for_string=True), trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["safe_href"] = safe_href
        self.templates.filters["show"] = show_value

    @property
    def prefix(self) -> str:
        return self.settings.elasticsearch.index_prefix

    @property
    def queue(self) -> AlertQueue:
        return AlertQueue(self.es, self.prefix)


@dataclass
class Ctx:
    """One signed-in request: who, from where, in which language and time zone."""

    state: ConsoleState
    session: Session
    client_ip: str
    lang: str
    request: Request

    @property
    def timezone(self) -> str:
        """The user's chosen zone, else the console's default (``console.timezone``)."""
        return self.session.timezone or self.state.settings.console.timezone

    @property
    def user(self) -> str:
        return self.session.user

    def can(self, perm: Perm | str) -> bool:
        return allowed(self.session.role, Perm(perm))

    def audit(self, action: str, obj: str, outcome: str = "success", details: dict[str, Any] | None = None) -> None:
        audit(self.state, action, obj, outcome, actor=self.user, client_ip=self.client_ip,
              details={"role": self.session.role.value, **(details or {})})

    def gettext(self, message: str) -> str:
        return translations(self.lang).gettext(message)


def audit(state: ConsoleState, action: str, obj: str, outcome: str, *, actor: str, client_ip: str | None,
          details: dict[str, Any] | None = None) -> None:
    """One ``secops.audit`` document: who, what, when, from where, outcome."""
    details = dict(details or {})
    try:
        ip = str(ipaddress.ip_address(client_ip or ""))
    except ValueError:  # a unix socket or test transport: keep what there is, as text
        ip, details["client"] = None, client_ip
    write_audit(state.es, state.prefix, action, obj[:1000], outcome, actor=actor, source_ip=ip,
                refresh=False, details=details)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def state_of(request: Request) -> ConsoleState:
    return request.app.state.console


async def _csrf_token_sent(request: Request) -> str | None:
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    return sent


def require(perm: Perm) -> Callable[[Request], Any]:
    """A dependency: a live session, a valid CSRF token on state-changing methods, and ``perm`` for the role.
    Refusals are 403 and leave an audit document."""

    async def dependency(request: Request) -> Ctx:
        st = state_of(request)
        session = await run_in_threadpool(st.users.session, request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise LoginRequired()
        ctx = Ctx(st, session, client_ip(request),
                  negotiate(request.headers.get("accept-language"), session.lang), request)
        what = f"{request.method} {request.url.path}"
        if request.method not in SAFE_METHODS:
            sent = await _csrf_token_sent(request)
            if not sent or not secrets.compare_digest(sent.encode(), session.csrf.encode()):
                await run_in_threadpool(ctx.audit, "console.csrf_refused", what, "failure")
                raise HTTPException(403, "missing or wrong CSRF token")
        if not ctx.can(perm):
            await run_in_threadpool(ctx.audit, "console.denied", what, "failure", {"permission": perm.value})
            raise HTTPException(403, f"role {session.role.value} may not {perm.value}")
        return ctx

    dependency.perm = perm  # type: ignore[attr-defined]  # read by the route-coverage test
    return dependency


def render(ctx: Ctx | None, request: Request, template: str, status: int = 200, lang: str | None = None,
           **values: Any) -> HTMLResponse:
    lang = lang or (ctx.lang if ctx else negotiate(request.headers.get("accept-language")))
    tr = translations(lang)
    zone = ctx.timezone if ctx else state_of(request).settings.console.timezone
    html = state_of(request).templates.get_template(template).render(
        _=tr.gettext, ngettext=tr.ngettext, pgettext=tr.pgettext, texts=Texts(lang, zone), ctx=ctx, request=request,
        lang=lang, Perm=Perm,
        kibana=state_of(request).settings.kibana.url, quote=quote, **values)
    return HTMLResponse(html, status_code=status)


def safe_href(url: Any) -> str | None:
    """A link target only for http(s) URLs and site-relative paths; anything else (javascript:, data:...) is
    shown as text instead of linked."""
    if not isinstance(url, str) or any(ch in url for ch in "\x00\r\n\t"):
        return None
    if url.startswith("/") and not url.startswith("//"):
        return url
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def show_value(value: Any) -> str | Markup:
    """A document value as text (lists joined, None as a dash); escaping is left to autoescape."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
