"""Live calls: turns over REST and WebSocket, call state, end of call, suggestion feedback."""

from __future__ import annotations

import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from assist.engine import AssistEngine, AssistError
from assist.feedback import FeedbackError
from assist.service.schemas import (
    CALL_ID_PATTERN,
    CallState,
    EndOut,
    FeedbackIn,
    FeedbackOut,
    TurnIn,
    TurnOut,
)
from assist.sessions import SessionStore
from kefu.web.auth import Principal, check_ws, require

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/calls", tags=["calls"])
CallId = Annotated[str, Path(pattern=CALL_ID_PATTERN, description="the call's id (letters, digits, . _ : -)")]
_CALL_ID = re.compile(CALL_ID_PATTERN)
UNKNOWN = "no live call {!r}: it never started, has ended or expired"


def turn(state: Any, call_id: str, role: str, text: str) -> dict[str, Any]:
    """Feed one turn through the engine (creating the call on its first turn); the reply as a dict."""
    sessions: SessionStore = state.sessions
    engine: AssistEngine = state.engine
    for _attempt in range(5):
        session, _ = sessions.get_or_create(call_id)
        loaded = session.version
        result = engine.process(session, role, text)
        if sessions.commit(session, loaded):  # a shared store refuses when another worker saved meanwhile
            break
    else:
        raise HTTPException(409, f"call {call_id!r} was updated concurrently five times; send the turn again")
    out = result.to_dict()
    out["kb_version"] = engine.kb_version
    return out


def record_feedback(state: Any, call_id: str, body: FeedbackIn) -> dict[str, Any]:
    store = state.feedback
    if store is None:
        raise HTTPException(503, "feedback is not stored: the service runs without a feedback database")
    hit = state.engine.script(body.script_id)
    store.record(call_id, body.script_id, body.action, source="agent", scenario=hit.scenario if hit else "")
    return {"call_id": call_id, "script_id": body.script_id, "action": body.action, "recorded": True}


@router.post("/{call_id}/turns", response_model=TurnOut,
             summary="Feed one turn; get suggestions (customer turns) and alerts")
async def post_turn(request: Request, call_id: CallId, body: TurnIn,
                    _: Principal = Depends(require("turns"))) -> JSONResponse:
    # Runs on the event loop: the engine takes about a millisecond, less than a thread hand-off would cost.
    return JSONResponse(turn(request.app.state, call_id, body.role, body.text))


@router.get("", summary="Live call ids (most recently active last)")
async def list_calls(request: Request, _: Principal = Depends(require("calls:read"))) -> dict[str, Any]:
    sessions: SessionStore = request.app.state.sessions
    return {"calls": sessions.ids(), **sessions.stats()}


@router.get("/{call_id}", response_model=CallState, summary="A live call's state")
async def get_call(request: Request, call_id: CallId,
                   _: Principal = Depends(require("calls:read"))) -> dict[str, Any]:
    session = request.app.state.sessions.get(call_id)
    if session is None:
        raise HTTPException(404, UNKNOWN.format(call_id))
    return session.describe(request.app.state.engine.script)


@router.delete("/{call_id}", response_model=EndOut, summary="End a call (its state is dropped)")
async def end_call(request: Request, call_id: CallId, _: Principal = Depends(require("turns"))) -> dict[str, Any]:
    session = request.app.state.sessions.end(call_id)
    if session is None:
        raise HTTPException(404, UNKNOWN.format(call_id))
    return {"call_id": call_id, "ended": True, "n_turns": session.n_turns}


@router.post("/{call_id}/feedback", response_model=FeedbackOut,
             summary="The agent accepted, dismissed or used a suggestion")
async def post_feedback(request: Request, call_id: CallId, body: FeedbackIn,
                        _: Principal = Depends(require("feedback"))) -> dict[str, Any]:
    return record_feedback(request.app.state, call_id, body)


def _error(message: str, status: int = 422, **extra: Any) -> str:
    return json.dumps({"error": "invalid request" if status == 422 else "error", "status": status,
                       "message": message, **extra}, ensure_ascii=False)


@router.websocket("/{call_id}/stream")
async def stream(websocket: WebSocket, call_id: str) -> None:
    """Send turns as JSON messages ({"role", "text"}), receive the same replies as POST …/turns.

    Also accepted: {"type": "feedback", "script_id", "action"} and {"type": "end"} (ends the call and closes).
    A malformed message gets {"error", "status": 422, "message"} and the stream stays open.
    """
    if not _CALL_ID.match(call_id):
        await websocket.close(code=1008, reason="bad call id")
        return
    if check_ws(websocket, "turns") is None:
        await websocket.close(code=1008, reason="missing, unknown or unauthorised API key")
        return
    await websocket.accept()
    state = websocket.app.state
    limit = state.settings.max_body_bytes
    while True:
        try:
            raw = await websocket.receive_text()
        except WebSocketDisconnect:
            return
        if len(raw.encode("utf-8")) > limit:
            await websocket.send_text(_error(f"a message must be at most {limit} bytes", 413))
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            await websocket.send_text(_error(f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(data, dict):
            await websocket.send_text(_error(f"a message must be a JSON object, got {type(data).__name__}"))
            continue
        kind = data.get("type", "turn")
        try:
            if kind == "turn":
                body = TurnIn.model_validate(data)
                reply = turn(state, call_id, body.role, body.text)
            elif kind == "feedback":
                reply = record_feedback(state, call_id, FeedbackIn.model_validate(data))
            elif kind == "end":
                session = state.sessions.end(call_id)
                await websocket.send_text(json.dumps({"call_id": call_id, "ended": session is not None,
                                                      "n_turns": session.n_turns if session else 0}))
                await websocket.close()
                return
            else:
                await websocket.send_text(_error(f"type must be turn, feedback or end, got {kind!r}"))
                continue
        except ValidationError as exc:
            fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors())
            await websocket.send_text(_error(fields))
            continue
        except (AssistError, FeedbackError) as exc:
            await websocket.send_text(_error(str(exc)))
            continue
        except HTTPException as exc:
            await websocket.send_text(_error(str(exc.detail), exc.status_code))
            continue
        await websocket.send_text(json.dumps(reply, ensure_ascii=False))
