"""Routes of the 质检 pages (placeholder until the pages are built)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from kefu.web.auth import Principal
from kefu.web.console import NavItem, add_nav, add_templates, page_user, render

add_templates("qa", Path(__file__).resolve().parent / "templates")
add_nav(NavItem("质检", "/console/qa/", "qa:read", "qa"))
router = APIRouter(include_in_schema=False)


@router.get("/console/qa/", response_class=HTMLResponse)
async def index(request: Request, principal: Principal = Depends(page_user("qa:read"))) -> HTMLResponse:
    return render(request, "qa/index.html", principal, group="qa", title="质检")
