"""The FastAPI application factory: engine, sessions, alert bus, feedback, keys and hot reload wired together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from assist.alerts import AlertBus, MemoryAlertBus, SqliteAlertBus
from assist.engine import AssistEngine, AssistError
from assist.feedback import FeedbackError, FeedbackStore
from assist.service.reload import IndexSource, KbIndexSource, Reloader
from assist.service.routers import admin, calls, health, supervisor
from assist.service.settings import ServiceSettings
from assist.sessions import SessionStore
from assist.sessions_sqlite import SqliteSessionStore
from kefu import __version__
from kefu.web.auth import ApiKeys

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]
# Knowledge-base writes carry many scripts; everything else is one short turn.
LARGE_BODY_PATHS = ("/v1/kb/", "/console/agent/api/replay")  # and the agent panel's training-replay uploads
LARGE_BODY_BYTES = 4 * 1024 * 1024
# Transcript uploads of the console's QA pages (scored in a background job; qa_inspect/web/jobs.py).
UPLOAD_PATHS = ("/console/qa/api/jobs",)
UPLOAD_BODY_BYTES = 512 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, by Content-Length or while it streams in (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LARGE_BODY_BYTES if scope["path"].startswith(LARGE_BODY_PATHS) else self.max_bytes
        if scope["path"].startswith(UPLOAD_PATHS):
            limit = UPLOAD_BODY_BYTES
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = limit + 1
                if size > limit:
                    await _too_large(send, limit)
                    return
                await self.app(scope, receive, send)  # the server stops the body at Content-Length
                return
        # No Content-Length (chunked): count the body as it streams to the app, without holding it (uploads
        # may be large). Past the limit the app sees a disconnect and the client gets 413 instead.
        state = {"seen": 0, "over": False, "started": False}

        async def counting_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"] and not state["started"]:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await _too_large(send, limit)


async def _too_large(send: Callable[[Message], Awaitable[None]], limit: int) -> None:
    body = json.dumps({"error": "request too large", "message": f"the request body must be at most {limit} bytes"})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})


def _errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "field": ".".join(p for p in loc if p not in ("body", "path", "query")),
                    "msg": str(err.get("msg", "")), "type": err.get("type", "")})
    return out


def create_app(
    settings: ServiceSettings | None = None,
    *,
    engine: AssistEngine | None = None,
    source: IndexSource | None = None,
    keys: ApiKeys | None = None,
    feedback: FeedbackStore | None = None,
    bus: AlertBus | None = None,
) -> FastAPI:
    """The assist service. Every part can be injected (tests); otherwise it is built from `settings`.

    With no settings, they are read from KEFU_ASSIST_* variables (how uvicorn workers get them).
    """
    settings = settings or ServiceSettings.from_env()
    bus = bus or (SqliteAlertBus(settings.alerts_db) if settings.alerts_db else MemoryAlertBus())
    if feedback is None and settings.feedback_db is not None:
        feedback = FeedbackStore(settings.feedback_db)
    if engine is None:
        from assist.factory import build_engine

        engine = build_engine(kb_dir=settings.kb_dir, model_dir=settings.model_dir, config=settings.engine,
                              feedback=feedback, alerts=bus)
    else:
        engine.alerts = engine.alerts or bus
        engine.feedback = engine.feedback or feedback
    if source is None and settings.kb_dir is not None:
        source = KbIndexSource(settings.kb_dir)
    engine.warm_up()
    reloader = Reloader(engine, source, settings.reload_interval_s)
    if source is not None and engine.retriever is None:
        reloaded, message = reloader.check()
        if not reloaded:
            log.warning("knowledge base %s: %s; suggestions start once an index is there", settings.kb_dir, message)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reloader.start()
        sweeper = asyncio.create_task(_sweep(app.state.sessions))
        log.info("assist service up (pid %d, kb %s)", os.getpid(), engine.kb_version)
        try:
            yield
        finally:
            sweeper.cancel()
            reloader.stop()
            if feedback is not None:
                feedback.close()

    app = FastAPI(
        title="kefu assist",
        version=__version__,
        description="Live agent assist for the 95598 hotline: scenario scripts while the customer speaks, "
                    "taboo and complaint-risk alerts, a supervisors' alert stream. See docs/assist.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    if settings.session_db is not None:
        app.state.sessions = SqliteSessionStore(settings.session_db, settings.max_sessions, settings.session_ttl_s)
    else:
        app.state.sessions = SessionStore(settings.max_sessions, settings.session_ttl_s)
    app.state.keys = keys if keys is not None else ApiKeys.load(settings.keys_file)
    app.state.bus = bus
    app.state.feedback = feedback
    app.state.reloader = reloader
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _errors(exc)
        message = "; ".join(f"{e['field'] or 'body'}: {e['msg']}" for e in errors)
        return JSONResponse(status_code=422, content={"error": "invalid request", "message": message,
                                                      "detail": errors})

    @app.exception_handler(AssistError)
    async def _assist(request: Request, exc: AssistError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid turn", "message": str(exc)})

    @app.exception_handler(FeedbackError)
    async def _feedback(request: Request, exc: FeedbackError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid feedback", "message": str(exc)})

    app.include_router(health.router)
    app.include_router(calls.router)
    app.include_router(supervisor.router)
    app.include_router(admin.router)
    _mount_console(app)
    return app


def _mount_console(app: FastAPI) -> None:
    """The web console (docs/console.md): each package serves its own pages inside the shared shell."""
    from assist.web import router as agent_pages
    from kefu.web.console import mount_console
    from knowledge_base.web import router as kb_pages
    from qa_inspect.web import router as qa_pages

    mount_console(app, [agent_pages, kb_pages, qa_pages])


async def _sweep(sessions: SessionStore, every_s: float = 30.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        with contextlib.suppress(Exception):
            sessions.sweep()
