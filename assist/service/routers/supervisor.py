"""The supervisors' view: live alerts across calls, as a WebSocket stream or by polling."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect

from kefu.web.auth import Principal, check_ws, require

router = APIRouter(prefix="/v1/supervisor", tags=["supervisor"])
POLL_S = 0.2


@router.get("/alerts", summary="Alerts after sequence number `since` (oldest first)")
async def alerts(request: Request, since: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000),
                 _: Principal = Depends(require("alerts"))) -> dict[str, Any]:
    bus = request.app.state.bus
    items = bus.since(since, limit)
    return {"alerts": items, "last_seq": items[-1]["seq"] if items else max(since, 0)}


@router.websocket("/stream")
async def stream(websocket: WebSocket, since: int | None = None) -> None:
    """Pushes every new alert (complaint risk, fatal taboo) of every call as one JSON message each.

    `?since=N` replays alerts after sequence number N first (resume after a reconnect); by default only new ones.
    """
    if check_ws(websocket, "alerts") is None:
        await websocket.close(code=1008, reason="missing, unknown or unauthorised API key")
        return
    await websocket.accept()
    bus = websocket.app.state.bus
    seq = bus.last_seq() if since is None else since

    async def watch_disconnect() -> None:
        while True:
            await websocket.receive_text()  # supervisors send nothing; this returns on disconnect

    watcher = asyncio.create_task(watch_disconnect())
    try:
        while not watcher.done():
            for alert in bus.since(seq, 100):
                seq = alert["seq"]
                await websocket.send_text(json.dumps(alert, ensure_ascii=False))
            await asyncio.sleep(POLL_S)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        watcher.cancel()
