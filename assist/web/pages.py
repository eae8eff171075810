"""Routes of the 坐席助手 pages (placeholder until the pages are built)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from kefu.web.auth import Principal
from kefu.web.console import NavItem, add_nav, add_templates, page_user, render

add_templates("agent", Path(__file__).resolve().parent / "templates")
add_nav(NavItem("坐席助手", "/console/agent/", "turns", "agent"))
router = APIRouter(include_in_schema=False)


@router.get("/console/agent/", response_class=HTMLResponse)
async def index(request: Request, principal: Principal = Depends(page_user("turns"))) -> HTMLResponse:
    return render(request, "agent/index.html", principal, group="agent", title="坐席助手")
