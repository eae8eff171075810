"""Routes of the 坐席助手 pages: the live-call panel and the training replay (permission "turns").

The pages talk to the live API with the sign-in cookie: POST /v1/calls/{id}/turns for every turn, POST
/v1/calls/{id}/feedback for 复制/采纳/忽略, GET /v1/calls/{id} to restore a call after a reload and DELETE
/v1/calls/{id} to end it. The only JSON endpoint of their own parses a replay upload with kefu.io's readers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from assist.web.replay import EXTENSIONS, MAX_UPLOAD_BYTES, ReplayFileError, parse_upload
from kefu.web.auth import Principal, require
from kefu.web.console import NavItem, add_nav, add_static, add_templates, page_user, render

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

add_templates("agent", HERE / "templates")
add_static("agent", STATIC)
add_nav(NavItem("坐席助手", "/console/agent/", "turns", "agent",
                description="通话中实时推荐场景话术，服务忌语与投诉风险即时提醒；也可回放录音转写做培训。"))
router = APIRouter(include_in_schema=False)


def _panel_context(request: Request) -> dict[str, Any]:
    """What the panel's script needs to know about the service: thresholds, feedback, index."""
    state = request.app.state
    engine = state.engine
    cfg = engine.config
    return {
        "panel": {
            "risk_threshold": cfg.risk_threshold,
            "risk_reset": cfg.risk_reset,
            "risk_decay": cfg.risk_decay,
            "min_score": round(cfg.min_score, 4),
            "feedback": state.feedback is not None,
            "index": engine.retriever is not None,
            "kb_version": engine.kb_version,
            "max_chars": cfg.max_text_chars,
        },
    }




@router.get("/console/agent/", response_class=HTMLResponse)
async def index(request: Request, principal: Principal = Depends(page_user("turns"))) -> HTMLResponse:
    return render(request, "agent/index.html", principal, group="agent", title="坐席助手", tab="live",
                  **_panel_context(request))


@router.get("/console/agent/replay", response_class=HTMLResponse)
async def replay_page(request: Request, principal: Principal = Depends(page_user("turns"))) -> HTMLResponse:
    return render(request, "agent/replay.html", principal, group="agent", title="培训回放", tab="replay",
                  extensions=", ".join(EXTENSIONS), max_mb=MAX_UPLOAD_BYTES // (1024 * 1024),
                  **_panel_context(request))


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": "invalid upload", "message": message, **extra})


@router.post("/console/agent/api/replay")
async def replay_upload(request: Request, file: UploadFile | None = File(None),
                        principal: Principal = Depends(require("turns"))) -> JSONResponse:
    """Parse an uploaded transcript file: its valid calls with their turns, and each malformed line."""
    if file is None or not file.filename:
        return _error(422, "请选择要回放的通话文件")
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return _error(413, f"文件超过 {MAX_UPLOAD_BYTES // (1024 * 1024)} MB：培训回放请只上传需要的几通通话")
    try:
        parsed = await run_in_threadpool(parse_upload, data, file.filename)
    except ReplayFileError as exc:
        return _error(422, str(exc))
    log.info("replay upload by %s: %s, %d calls, %d malformed", principal.name, parsed["filename"],
             len(parsed["calls"]), parsed["n_bad"])
    if not parsed["calls"]:
        first = parsed["errors"][0]["text"] if parsed["errors"] else "没有可回放的通话"
        return _error(422, f"{parsed['filename']} 里没有可回放的通话：{first}", **parsed)
    return JSONResponse(parsed)
