"""Liveness and readiness: /healthz."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, Request

from assist.service.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Is the service up, and which index does it serve")
async def healthz(request: Request) -> dict[str, Any]:
    state = request.app.state
    engine = state.engine
    return {"status": "ok", "kb_version": engine.kb_version,
            "index": "loaded" if engine.retriever is not None else "missing",
            "sessions": len(state.sessions), "pid": os.getpid(), "auth": state.keys.enabled}
