"""``agentopt dashboard``: a read-only web app over an archive (Starlette, Jinja2, plotly.js).

Read-only three times over: the database connection refuses writes, no route writes, and the one
route that touches the file system (the export download) works in a temporary directory it removes.
No route reads a file or imports a module that archive content names (see ``views``): the export
download is offered only for built-in tasks.
Everything shown was written by LLMs, so templates escape all of it, charts get escaped labels, and a
Content-Security-Policy allows only the app's own scripts: an injected ``<script>`` could not run
even if escaping failed somewhere.
"""

import io
import math
import re
import socket
import tarfile
import tempfile
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygments import highlight
from pygments.formatter import Formatter
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentopt.agents.runtime.errors import AgentoptError, ConfigError
from agentopt.archive import queries
from agentopt.archive.store import Archive
from agentopt.optimizer.frontends.dashboard import views

CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_ID = 2**62  # ids and pages beyond this are not numbers any database column holds
POLL_MS = 2000
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# The static report carries the policy in a <meta> tag, where browsers ignore (and warn about) frame-ancestors.
META_CSP = "; ".join(part for part in CSP.split("; ") if not part.startswith("frame-ancestors"))
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def plotly_js() -> Path:
    """plotly.js as the plotly package ships it: served from there, never from a CDN."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def static_dir() -> Path:
    return Path(str(resources.files("agentopt.optimizer.frontends.dashboard") / "static"))


def code_html(code: str, language: str) -> Markup:
    """Highlighted code; Pygments escapes the text it wraps in spans."""
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        lexer = TextLexer()
    return Markup(highlight(code, lexer, HtmlFormatter(cssclass="code")))  # noqa: S704 - Pygments escapes


def percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.{digits}f}" if math.isfinite(value) else f"not a score ({value})"


def environment() -> Environment:
    """The templates, autoescaped; shared with the static report."""
    env = Environment(loader=PackageLoader("agentopt.optimizer.frontends.dashboard"), autoescape=select_autoescape(default=True))
    env.filters.update(pct=percent, code=code_html)
    env.globals.update(describe=views.describe, clip_chars=views.CLIP_CHARS, meta_csp=META_CSP)
    return env


def code_css() -> str:
    """The colours of highlighted code (Pygments' default style)."""
    formatter: Formatter[str] = HtmlFormatter(cssclass="code")  # its stubs type get_style_defs on the base only
    return formatter.get_style_defs(".code")


class SecurityHeaders:
    """Adds the Content-Security-Policy and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] += [(b"content-security-policy", CSP.encode()),
                                       (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def _int(request: Request, name: str, default: int | None = None, low: int = 1, high: int = MAX_ID) -> int:
    raw = request.query_params.get(name) or ""
    if not raw and default is not None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def _day(request: Request, name: str, end: bool = False) -> datetime | None:
    """The start of the day named in the query; ``end``: the start of the next, so the day is included."""
    raw = request.query_params.get(name) or ""
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw) + timedelta(days=int(end)), time())
    except (ValueError, OverflowError):
        raise HTTPException(400, f"{name} must be a date like 2026-11-30, not {raw!r}") from None


def _campaign_id(request: Request) -> str:
    campaign_id: str = request.path_params["campaign_id"]  # a path segment, as the route has it
    if not CAMPAIGN_ID.match(campaign_id):
        raise HTTPException(404, "not a campaign id")
    return campaign_id


class Pages:
    """The dashboard's routes over one archive: each a method, so the app is a list of them."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.env = environment()

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(name).render(static=False, poll_ms=POLL_MS, **context),
                            status_code=status_code)

    def known_campaign(self, request: Request) -> str:
        campaign_id = _campaign_id(request)
        if self.archive.find_campaign(campaign_id) is None:
            raise HTTPException(404, f"no campaign {campaign_id!r} in this archive")
        return campaign_id

    def known_candidate(self, candidate_id: int) -> int:
        if not 1 <= candidate_id <= MAX_ID or not queries.candidate_exists(self.archive, candidate_id):
            raise HTTPException(404, f"no candidate {candidate_id} in this archive")
        return candidate_id

    def campaigns(self, request: Request) -> HTMLResponse:
        task = request.query_params.get("task") or None
        strategy = request.query_params.get("strategy") or None
        since, until = _day(request, "since"), _day(request, "until", end=True)
        data = views.campaign_list(self.archive, task, strategy, since, until,
                                   _int(request, "page", 1, high=views.MAX_PAGE))
        return self.render("campaigns.html", **data, task=task or "", strategy=strategy or "",
                           since=request.query_params.get("since", ""), until=request.query_params.get("until", ""))

    def campaign(self, request: Request) -> HTMLResponse:
        campaign_id = self.known_campaign(request)
        sort = request.query_params.get("sort", "id")
        if sort not in queries.SORT_KEYS:
            raise HTTPException(400, f"sort by one of {', '.join(queries.SORT_KEYS)}, not {sort!r}")
        data = views.campaign_page(self.archive, campaign_id, sort, request.query_params.get("desc") == "1",
                                   request.query_params.get("strategy") or None,
                                   request.query_params.get("kind") or None,
                                   _int(request, "page", 1, high=views.MAX_PAGE))
        return self.render("campaign.html", **data, live_url=f"/api/campaigns/{campaign_id}")

    def campaign_json(self, request: Request) -> JSONResponse:
        return JSONResponse(views.campaign_live(self.archive, self.known_campaign(request)))

    def candidate(self, request: Request) -> HTMLResponse:
        candidate_id = self.known_candidate(request.path_params["candidate_id"])
        return self.render("candidate.html", **views.candidate_page(self.archive, candidate_id))

    def stored_text(self, request: Request) -> PlainTextResponse:
        """A text the pages clip, whole, as plain text (never rendered as HTML)."""
        candidate_id = self.known_candidate(request.path_params["candidate_id"])
        params = request.query_params
        field = params.get("field", "")
        note = _int(request, "note") if field == "note" else None
        text = views.stored_text(self.archive, candidate_id, field, params.get("split", ""),
                                 params.get("example", ""), note)
        if text is None:
            raise HTTPException(404, f"candidate {candidate_id} has no such stored text")
        return PlainTextResponse(text)

    def export(self, request: Request) -> Response:
        from agentopt.optimizer.engine.stored import export_agent

        candidate_id = self.known_candidate(request.path_params["candidate_id"])
        record = self.archive.candidate(candidate_id)
        refused = queries.payload_problem(record.payload) or views.task_unloadable(self.archive, record.campaign_id)
        if refused:
            raise HTTPException(409, f"candidate {candidate_id} cannot be exported here: {refused}")
        with tempfile.TemporaryDirectory(prefix="agentopt-dashboard-export-") as tmp:
            try:
                folder = export_agent(self.archive, candidate_id, Path(tmp) / "package")
            except AgentoptError as exc:
                raise HTTPException(409, f"candidate {candidate_id} cannot be exported: {exc}") from None
            buffer = io.BytesIO()
            name = f"agentopt-candidate-{candidate_id}"
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(folder, arcname=name)
        return Response(buffer.getvalue(), media_type="application/gzip",
                        headers={"content-disposition": f'attachment; filename="{name}.tar.gz"'})

    def compare(self, request: Request) -> HTMLResponse:
        params = request.query_params
        if "a" in params or "b" in params:
            a, b = (self.known_candidate(_int(request, key)) for key in ("a", "b"))
            return self.render("compare_candidates.html", **views.compare_candidates(self.archive, a, b))
        ids = [i for i in (params.get("campaigns") or "").split(",") if i]
        if not params.get("task") and len(ids) < 2:
            raise HTTPException(400, "compare two candidates (?a=ID&b=ID), the campaigns of a task (?task=NAME), "
                                     "or campaigns by id (?campaigns=ID,ID)")
        for campaign_id in ids:
            if not CAMPAIGN_ID.match(campaign_id) or self.archive.find_campaign(campaign_id) is None:
                raise HTTPException(404, f"no campaign {campaign_id!r} in this archive")
        if params.get("task") and not queries.count_campaigns(self.archive, params["task"]):
            raise HTTPException(404, f"no campaign on task {params['task']!r} in this archive")
        try:
            rows = views.compare_campaigns(self.archive, params.get("task") or None, ids)
        except AgentoptError as exc:
            raise HTTPException(400, str(exc)) from None
        return self.render("compare_campaigns.html", rows=rows, task=params.get("task", ""))

    async def error(self, request: Request, exc: Exception) -> HTMLResponse:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
        return self.render("error.html", status_code=code, code=code, detail=detail)


def _plotly(_request: Request) -> FileResponse:
    return FileResponse(plotly_js(), media_type="text/javascript")


def _code_style(_request: Request) -> Response:
    return Response(code_css(), media_type="text/css")


def create_app(archive: Archive, hosts: Sequence[str] | None = LOOPBACK) -> Starlette:
    """The dashboard over ``archive`` (open it read-only: ``Archive(url, create=False, read_only=True)``).
    ``hosts``: the Host headers to answer, loopback names by default as ``agentopt dashboard`` has
    them (a page on another site that rebinds its DNS name to 127.0.0.1 sends its own); ``None``
    leaves that to whoever mounts the app."""
    pages = Pages(archive)
    routes = [
        Route("/", pages.campaigns),
        Route("/campaigns/{campaign_id:str}", pages.campaign),
        Route("/api/campaigns/{campaign_id:str}", pages.campaign_json),
        Route("/candidates/{candidate_id:int}", pages.candidate),
        Route("/candidates/{candidate_id:int}/export", pages.export),
        Route("/candidates/{candidate_id:int}/text", pages.stored_text),
        Route("/compare", pages.compare),
        Route("/static/plotly.min.js", _plotly),
        Route("/static/code.css", _code_style),
        Mount("/static", StaticFiles(directory=static_dir()), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: pages.error, AgentoptError: pages.error})
    app.add_middleware(SecurityHeaders)
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    return app


def check_port(host: str, port: int) -> None:
    """Fail with one line, before anything starts, when the address cannot be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (pick another with --port)") \
                from None


def serve(archive: Archive, host: str, port: int) -> None:
    import uvicorn

    check_port(host, port)
    hosts = ["*"] if host in ("0.0.0.0", "::", "") else [host, *LOOPBACK]
    uvicorn.run(create_app(archive, hosts), host=host, port=port, log_level="warning")
