"""The web console's shell: templates, static assets, navigation, sign-in and the page guard of every page group."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, PrefixLoader, select_autoescape

from kefu import __version__
from kefu.web.auth import COOKIE_NAME, LOCAL, ROLES, ApiKeys, Principal, key_from_request

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_URL = "/console/static"
COOKIE_MAX_AGE_S = 12 * 3600  # one working shift

ROLE_NAMES = {"agent": "坐席", "supervisor": "班长", "trainer": "培训师", "qa": "质检员", "admin": "管理员"}
assert set(ROLE_NAMES) == set(ROLES)


@dataclass(frozen=True, slots=True)
class NavItem:
    """One entry of the console's top navigation, shown to roles that hold `permission`."""

    title: str
    href: str
    permission: str
    group: str  # "agent" | "kb" | "qa": marks the active entry
    unless: str = ""  # hidden from roles holding this permission (they reach the page another way)
    description: str = ""  # one line on the home page

    def __post_init__(self) -> None:
        if not self.href.startswith("/console/"):
            raise ValueError(f"console pages live under /console/, got href {self.href!r}")


_loaders: dict[str, FileSystemLoader] = {"kefu": FileSystemLoader(HERE / "templates")}
_nav: list[NavItem] = []
_static: dict[str, Path] = {}
env = Environment(loader=PrefixLoader(_loaders), autoescape=select_autoescape(["html"]), trim_blocks=True,
                  lstrip_blocks=True)
templates = Jinja2Templates(env=env)


def add_templates(prefix: str, directory: Path) -> None:
    """Make `directory`'s templates available as "<prefix>/<name>" (each page group has its own prefix)."""
    if prefix in _loaders and Path(_loaders[prefix].searchpath[0]) != Path(directory):
        raise ValueError(f"template prefix {prefix!r} is already taken by {_loaders[prefix].searchpath[0]}")
    _loaders[prefix] = FileSystemLoader(directory)


def add_static(group: str, directory: Path) -> None:
    """Serve `directory` (a page group's own JS and CSS) at /console/<group>/static/."""
    if not Path(directory).is_dir():
        raise ValueError(f"static directory of {group!r} does not exist: {directory}")
    _static[group] = Path(directory)


def add_nav(*items: NavItem) -> None:
    """Register navigation entries (idempotent: page modules may be imported more than once)."""
    for item in items:
        if item not in _nav:
            _nav.append(item)


def nav_for(principal: Principal) -> list[NavItem]:
    return [item for item in _nav
            if principal.can(item.permission) and not (item.unless and principal.can(item.unless))]


class SignInRequired(Exception):
    """A page needs a signed-in user; the handler redirects to the sign-in page and back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class PageForbidden(Exception):
    """The signed-in role may not open this page."""

    def __init__(self, principal: Principal, permission: str) -> None:
        super().__init__(permission)
        self.principal = principal
        self.permission = permission


def current_principal(request: Request) -> Principal | None:
    """The signed-in principal, LOCAL when auth is off, None when a key is needed and missing or unknown."""
    keys: ApiKeys = request.app.state.keys
    if not keys.enabled:
        return LOCAL
    return keys.lookup(key_from_request(request))


def page_user(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency for console pages: the principal, or a redirect to sign-in / a 403 page."""

    async def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        if not principal.can(permission):
            raise PageForbidden(principal, permission)
        return principal

    return dependency


def render(request: Request, template: str, principal: Principal, *, status_code: int = 200,
           group: str = "", title: str = "", **context: Any) -> HTMLResponse:
    """Render a page inside the shell (navigation, role badge, sign-out)."""
    keys: ApiKeys = request.app.state.keys
    ctx = {
        "principal": principal,
        "role_name": ROLE_NAMES.get(principal.role, principal.role),
        "nav": nav_for(principal),
        "group": group,
        "title": title,
        "auth_enabled": keys.enabled,
        "version": __version__,
        "static": STATIC_URL,
        **context,
    }
    return templates.TemplateResponse(request, template, ctx, status_code=status_code)


def _safe_next(value: str | None) -> str:
    """Only same-site console paths are valid targets after sign-in (no open redirect)."""
    if not value:
        return "/console/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/console"):
        return "/console/"
    return value


def _login_form(request: Request, next_url: str, error: str = "", status_code: int = 200) -> HTMLResponse:
    """The sign-in page (outside the shell: nobody is signed in yet)."""
    return templates.TemplateResponse(request, "kefu/login.html", {"next": next_url, "error": error,
                                       "static": STATIC_URL, "version": __version__}, status_code=status_code)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console")
async def console_no_slash() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    principal = current_principal(request)
    if principal is None:
        return RedirectResponse("/console/login", status_code=303)
    return render(request, "kefu/home.html", principal, title="首页")


@router.get("/console/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> Response:
    if not request.app.state.keys.enabled:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, _safe_next(next))


@router.post("/console/login", response_class=HTMLResponse)
async def login(request: Request, key: str = Form(""), next: str = Form("/console/")) -> Response:
    keys: ApiKeys = request.app.state.keys
    target = _safe_next(next)
    if not keys.enabled:
        return RedirectResponse(target, status_code=303)
    principal = keys.lookup(key.strip())
    if principal is None:
        log.info("console sign-in refused (unknown key)")
        return _login_form(request, target, "密钥无效，请检查后重试。", status_code=401)
    log.info("console sign-in: %s (%s)", principal.name, principal.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE_NAME, key.strip(), max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict",
                        path="/")
    return response


@router.post("/console/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/")
    return response


def mount_console(app: FastAPI, page_routers: Sequence[APIRouter]) -> None:
    """Add the shell, the static assets and each page group's router to the service."""

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse(f"/console/login?next={quote(exc.next_url, safe='')}", status_code=303)

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> HTMLResponse:
        return render(request, "kefu/forbidden.html", exc.principal, status_code=403, title="无权访问",
                      permission=exc.permission)

    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="console-static")
    for group, directory in _static.items():
        app.mount(f"/console/{group}/static", StaticFiles(directory=directory), name=f"console-{group}-static")
    app.include_router(router)
    for page_router in page_routers:
        app.include_router(page_router)
