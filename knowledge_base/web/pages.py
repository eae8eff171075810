"""Routes of the 话术库 pages (placeholder until the pages are built)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from kefu.web.auth import Principal
from kefu.web.console import NavItem, add_nav, add_templates, page_user, render

add_templates("kb", Path(__file__).resolve().parent / "templates")
add_nav(NavItem("话术库", "/console/kb/", "kb:read", "kb"))
router = APIRouter(include_in_schema=False)


@router.get("/console/kb/", response_class=HTMLResponse)
async def index(request: Request, principal: Principal = Depends(page_user("kb:read"))) -> HTMLResponse:
    return render(request, "kb/index.html", principal, group="kb", title="话术库")
