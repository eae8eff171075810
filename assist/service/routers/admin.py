"""Trainers and admins: hot reload, knowledge-base writes, the feedback report."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from assist.service.schemas import ReloadOut, ScriptsIn
from kefu.io import KefuError
from kefu.web.auth import Principal, require

log = logging.getLogger(__name__)
router = APIRouter(tags=["admin"])


@router.post("/v1/admin/reload", response_model=ReloadOut,
             summary="Load the knowledge-base index now (the service also polls for new versions)")
async def reload(request: Request, force: bool = False,
                 _: Principal = Depends(require("reload"))) -> dict[str, Any]:
    reloader = request.app.state.reloader
    reloaded, message = await run_in_threadpool(reloader.check, force)
    return {"reloaded": reloaded, "kb_version": request.app.state.engine.kb_version, "message": message}


@router.post("/v1/kb/scripts", summary="Add or replace scenario scripts; the index is updated and reloaded")
async def write_scripts(request: Request, body: ScriptsIn,
                        principal: Principal = Depends(require("kb:write"))) -> dict[str, Any]:
    kb_dir = request.app.state.settings.kb_dir
    if kb_dir is None:
        raise HTTPException(503, "the service runs without a knowledge-base directory")

    def write() -> dict[str, Any]:
        from knowledge_base.io import parse_script
        from knowledge_base.kb import KnowledgeBase

        scripts = []
        for i, item in enumerate(body.scripts):
            raw = item.model_dump()
            raw["status"] = "approved" if body.approve else "draft"
            script, _explicit, problems = parse_script(raw)
            if script is None or problems:
                what = "; ".join(f"{f}: {m}" for f, m in problems)
                raise HTTPException(422, f"scripts[{i}] ({item.id}): {what}")
            scripts.append(script)
        try:
            with KnowledgeBase.open(kb_dir, create=True) as kb:
                report = kb.import_scripts(scripts, source="assist-api", author=principal.name)
        except KefuError as exc:
            raise HTTPException(422, str(exc)) from None
        out = report.to_dict()
        out["reloaded"], out["reload"] = request.app.state.reloader.check()
        return out

    return await run_in_threadpool(write)


@router.get("/v1/feedback/report", summary="Per script: shown, accepted, dismissed, used, rates, adjustment")
async def feedback_report(request: Request, _: Principal = Depends(require("feedback:report"))) -> dict[str, Any]:
    store = request.app.state.feedback
    if store is None:
        raise HTTPException(503, "the service runs without a feedback database")
    rows = await run_in_threadpool(store.report)
    return {"scripts": rows, "policy": {"max_adjust": store.policy.max_adjust,
                                        "min_evidence": store.policy.min_evidence}}
