"""The console application: FastAPI with server-rendered pages, the JSON API, sign-in, security headers and
error pages. ``create_app`` wires the contexts' stores to the routes; ``secops console`` serves it."""

from __future__ import annotations

import secrets
from typing import Annotated

from elasticsearch import ApiError, Elasticsearch, TransportError
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from secops import __version__
from secops.config import Settings
from secops.console import api, case_routes, hunt_routes, pages, tuning
from secops.console.alerts import QueryError
from secops.console.roles import Perm
from secops.console.users import LoginThrottle, UserStore
from secops.console.web import (
    HERE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsoleState,
    LoginRequired,
    audit,
    client_ip,
    render,
    require,
    state_of,
)
from secops.es.client import make_client

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def create_app(settings: Settings, es: Elasticsearch | None = None, *, secure_cookies: bool = False,
               throttle: LoginThrottle | None = None) -> FastAPI:
    es = es or make_client(settings)
    users = UserStore(es, settings.elasticsearch.index_prefix)
    users.ensure()
    app = FastAPI(title="secops console", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  description="The SOC console's JSON API. Sign in at /login; send the X-CSRF-Token header "
                              "(from /api/me) on every POST.")
    app.state.console = ConsoleState(settings, es, users, throttle or LoginThrottle(), secure_cookies)
    _configure_celery(settings)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(_auth_router())
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(case_routes.pages)
    app.include_router(case_routes.api)
    app.include_router(tuning.pages)
    app.include_router(tuning.api)
    app.include_router(hunt_routes.pages)
    app.include_router(hunt_routes.api)
    _handlers(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        if secure_cookies:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    return app


def _configure_celery(settings: Settings) -> None:
    """Approvals dispatch the next step to the workers through the configured broker."""
    from secops.celery_app import app, configure

    configure(app, settings)


def _auth_router():  # type: ignore[no-untyped-def]
    from fastapi import APIRouter, Depends

    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        token = secrets.token_urlsafe(32)
        response = render(None, request, "login.html", login_csrf=token, next=_local(next))
        _cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    @router.post("/login")
    def login(request: Request, name: Annotated[str, Form(max_length=64)],
              password: Annotated[str, Form(max_length=1024)], csrf: Annotated[str, Form(max_length=100)] = "",
              next: Annotated[str, Form(max_length=500)] = "/") -> Response:
        st, ip = state_of(request), client_ip(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
        if not csrf or not expected or not secrets.compare_digest(csrf.encode(), expected.encode()):
            audit(st, "console.csrf_refused", "POST /login", "failure", actor=name or "-", client_ip=ip)
            raise HTTPException(403, "missing or wrong CSRF token")
        wait = st.throttle.retry_after(ip, name)
        if wait > 0:
            audit(st, "console.login", name, "failure", actor=name, client_ip=ip, details={"reason": "throttled"})
            response = render(None, request, "login.html", status=429, login_csrf=csrf, next=_local(next),
                              error="throttled", retry_after=int(wait) + 1)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = st.users.verify(name, password)
        if user is None:
            st.throttle.failed(ip, name)
            audit(st, "console.login", name, "failure", actor=name, client_ip=ip, details={"reason": "bad credentials"})
            return render(None, request, "login.html", status=401, login_csrf=csrf, next=_local(next),
                          error="invalid")
        st.throttle.succeeded(ip, name)
        token, _session = st.users.open_session(user, ip)
        audit(st, "console.login", name, "success", actor=name, client_ip=ip, details={"role": user.role.value})
        response = RedirectResponse(_local(next), status_code=303)
        _cookie(request, response, SESSION_COOKIE, token, max_age=int(st.users.session_ttl.total_seconds()))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @router.post("/logout")
    def logout(request: Request, ctx=Depends(require(Perm.SELF))) -> RedirectResponse:  # type: ignore[no-untyped-def]
        ctx.state.users.close_session(ctx.session.token_id)
        ctx.audit("console.logout", ctx.user)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


def _local(target: str) -> str:
    """Only same-site paths as a redirect target (no open redirect)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=state_of(request).secure_cookies)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _handlers(app: FastAPI) -> None:
    def error(request: Request, status: int, message: str) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=status)
        return render(None, request, "error.html", status=status, status_code=status, message=message)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request) or request.method != "GET":
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(QueryError)
    async def bad_query(request: Request, exc: QueryError) -> Response:
        return error(request, 400, str(exc))

    @app.exception_handler(LookupError)
    async def not_found(request: Request, exc: LookupError) -> Response:
        return error(request, 404, str(exc).strip("'\""))

    @app.exception_handler(ApiError)
    async def store_refused(request: Request, exc: ApiError) -> Response:
        # an id or value the store cannot take (too long, not an address for an ip field...): the client's error
        status = 404 if exc.meta.status == 404 else 400 if exc.meta.status == 400 else 503
        return await run_in_threadpool(error, request, status, f"the store refused the request ({exc.message})")

    @app.exception_handler(TransportError)
    async def store_down(request: Request, exc: TransportError) -> Response:
        return await run_in_threadpool(error, request, 503, "Elasticsearch is unreachable; try again shortly")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", []))
        if _wants_json(request):
            return JSONResponse({"detail": exc.errors()}, status_code=422)
        return await run_in_threadpool(error, request, 422, f"{where}: {first.get('msg', 'invalid')}")
