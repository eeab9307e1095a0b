"""The HTTP side of `tracekeeper web`: aiohttp on 127.0.0.1, Jinja2 pages, a token, strict headers.

Access is Jupyter's: the URL printed at start carries a random token; a request bearing it gets
a cookie (HttpOnly, SameSite=Strict, named after the port because cookies are not scoped by
port) and is redirected to the same URL without the token, so it does not linger in history.
Every other request needs the cookie, else 403. The Host header must name the loopback address
the server listens on (a DNS-rebinding page would send its own name). Pages carry a
Content-Security-Policy with no script source at all: the viewer uses none, so an injected
`<script>` or `onerror=` could not run even if escaping failed. Page building runs on worker
threads (git and file reads block); the event loop only routes.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from tracekeeperd.errors import TracekeeperError

from ..errors import ClientError
from ..safetext import visible
from . import views
from .loader import Loader

if TYPE_CHECKING:
    import jinja2

    from tracekeeperd.paths import Paths
    from tracekeeperd.redact import Redactor

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

SEARCH_PAGE = 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_T = TypeVar("_T")


@dataclass
class Site:
    """What every page needs: the repository, where traces live, and the caches."""

    repo: Path
    git_dir: Path
    notes_ref: str
    loader: Loader
    token: str
    port: int = 0
    index: views.SessionIndex | None = None
    env: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        import jinja2

        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every template, whatever its name: all transcript text is escaped
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["q"] = lambda value: quote(str(value), safe="")
        self.env.filters["qpath"] = lambda value: quote(str(value), safe="/")
        self.env.globals["session_href"] = views.session_href
        self.env.globals["trace_href"] = trace_href

    @property
    def cookie(self) -> str:
        return f"tracekeeper-{self.port}"

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(repo=self.repo.name, **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


#: Schemes a note's trace URL may be linked with (stores write https:// and file:// URLs).
LINKABLE = ("https:", "http:", "file:")


def trace_href(url: str) -> str:
    """The URL if it is one of ours to link; "" for anything else (a pushed note is hostile:
    `javascript:` or `data:` must never become a link, even with no script allowed)."""
    return url if url.lower().startswith(LINKABLE) and not any(c in url for c in "\"'<> \n") else ""


def _site(request: web.Request) -> Site:
    site: Site = request.app["site"]
    return site


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token, cookie, Host, headers; and a WebError becomes its page."""
    site = _site(request)
    host = request.headers.get("Host", "")
    if host not in (f"127.0.0.1:{site.port}", f"localhost:{site.port}"):
        return _plain(403, "403: this viewer answers only on its own loopback address\n")
    given = request.query.get("token")
    if given is not None:
        if not hmac.compare_digest(given.encode(), site.token.encode()):
            return _plain(403, "403: wrong token; use the URL `tracekeeper web` printed\n")
        query = {k: v for k, v in request.query.items() if k != "token"}
        target = request.rel_url.with_query(query)
        response: web.StreamResponse = web.HTTPFound(str(target))
        response.set_cookie(site.cookie, site.token, httponly=True, samesite="Strict", path="/")
        _secure(response)
        return response
    cookie = request.cookies.get(site.cookie, "")
    if not hmac.compare_digest(cookie.encode(), site.token.encode()):
        return _plain(403, "403: open the URL `tracekeeper web` printed (it carries the token)\n")
    try:
        response = await handler(request)
    except views.WebError as exc:
        response = site.render("error.html", status=exc.status, message=str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = site.render("error.html", status=exc.status, message=exc.reason)
        else:
            raise
    except (ClientError, TracekeeperError, OSError) as exc:  # git missing, a disk error: one line
        response = site.render("error.html", status=500, message=visible(" ".join(str(exc).split())))
    _secure(response)
    return response


def _secure(response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers[name] = value


def _plain(status: int, text: str) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/plain", charset="utf-8")
    _secure(response)
    return response


def _int(request: web.Request, name: str, default: int = 0) -> int:
    value = request.query.get(name, "")
    if not value:
        return default
    if not value.isdigit() or len(value) > 12:
        raise views.WebError(f"{name} must be a number", 400)
    return int(value)


async def timeline(request: web.Request) -> web.Response:
    site = _site(request)
    query = request.query
    data = await asyncio.to_thread(
        views.timeline,
        site.repo,
        site.notes_ref,
        site.loader,
        path=query.get("path", ""),
        author=query.get("author", ""),
        agent=query.get("agent", ""),
        page=_int(request, "page"),
    )
    return site.render("timeline.html", t=data)


async def commit(request: web.Request) -> web.Response:
    site = _site(request)
    only = _int(request, "session", -1)
    data = await asyncio.to_thread(
        views.commit_view,
        site.git_dir,
        site.notes_ref,
        site.loader,
        request.match_info["sha"],
        only=None if only < 0 else only,
        start=_int(request, "from"),
    )
    return site.render("commit.html", c=data, only=only)


async def _index(site: Site) -> views.SessionIndex:
    site.index = await asyncio.to_thread(views.session_index, site.git_dir, site.notes_ref, site.index)
    return site.index


async def _in_session(
    request: web.Request, build: Callable[[Loader, views.SessionIndex, str, str, int], _T], number: int
) -> _T:
    """``build(loader, index, agent, session, number)`` on a worker thread: the session page and
    one line's full text find the session the same way."""
    site = _site(request)
    index = await _index(site)
    agent, session_id = request.match_info["agent"], request.match_info["session"]
    return await asyncio.to_thread(build, site.loader, index, agent, session_id, number)


async def session(request: web.Request) -> web.Response:
    data = await _in_session(request, views.session_view, _int(request, "from", 1))
    return _site(request).render("session.html", s=data)


async def session_text(request: web.Request) -> web.Response:
    text = await _in_session(request, views.line_text, int(request.match_info["line"]))
    # Plain text with nosniff: the browser shows it and never reads it as markup.
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def blame(request: web.Request) -> web.Response:
    site = _site(request)
    path = request.match_info["path"]
    if not path:
        names = await asyncio.to_thread(views.files, site.repo)
        return site.render("files.html", files=names)
    data = await asyncio.to_thread(views.blame, site.repo, site.notes_ref, site.loader, path)
    return site.render("blame.html", b=data)


async def search(request: web.Request) -> web.Response:
    """The `search` library's hits (tracekeeper/search.py: the daemon's index), a page at a time."""
    site = _site(request)
    query = request.query.get("q", "")
    page = _int(request, "page")
    hits: list[views.Hit] = []
    more = False
    error = ""
    if query:
        try:
            hits, more = await asyncio.to_thread(_search_page, site.repo, query, page)
        except ClientError as exc:  # a query FTS5 cannot read, nothing indexed yet: said in one line
            error = visible(str(exc))
    return site.render("search.html", q=query, hits=hits, error=error, page=page, more=more)


def _search_page(repo: Path, query: str, page: int) -> tuple[list[views.Hit], bool]:
    """One page of hits and whether more follow; on a worker thread, with the first import of the
    search library (it reads modules from disk) and the escaping of every snippet."""
    from .. import search as search_lib

    found = search_lib.search(query, repo=repo, limit=SEARCH_PAGE + 1, offset=page * SEARCH_PAGE)
    return [views.hit(one, search_lib.parts) for one in found[:SEARCH_PAGE]], len(found) > SEARCH_PAGE


async def no_icon(_request: web.Request) -> web.Response:
    """Browsers ask for one; answering keeps their consoles free of 404s."""
    return web.Response(status=204)


def make_app(site: Site) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 << 10)
    app["site"] = site
    app.router.add_get("/", timeline)
    app.router.add_get("/commit/{sha}", commit)
    app.router.add_get("/session/{agent}/{session}", session)
    app.router.add_get(r"/session/{agent}/{session}/text/{line:\d{1,12}}", session_text)
    app.router.add_get("/blame/{path:.*}", blame)
    app.router.add_get("/search", search)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_static("/static/", HERE / "static", follow_symlinks=False)
    return app


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` 0: a free one the kernel picks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def new_site(repo: Path, git_dir: Path, notes_ref: str, paths: Paths, redactor: Redactor | None) -> Site:
    return Site(repo, git_dir, notes_ref, Loader(paths, redactor), secrets.token_urlsafe(32))


async def serve(site: Site, sock: socket.socket, started: Callable[[str], None]) -> None:
    """Serve until cancelled; ``started`` gets the URL (with the token) once requests are accepted."""
    site.port = sock.getsockname()[1]
    # Compiled now, not on the first request of each page (Jinja2 caches them after this).
    for name in site.env.list_templates():
        site.env.get_template(name)
    runner = web.AppRunner(make_app(site), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        started(f"http://127.0.0.1:{site.port}/?token={site.token}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
