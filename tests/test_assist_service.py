"""The assist service in-process (TestClient): REST and WebSocket flows, alerts, auth, limits, malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from assist.engine import AssistEngine
from assist.feedback import FeedbackPolicy, FeedbackStore
from assist.service.app import create_app
from assist.service.settings import ServiceSettings
from assist.signals import LexiconTaboo, PhraseOpening, PhraseRisk
from kefu.web.auth import ApiKeys, AuthConfigError
from tests.assist_support import FakeRetriever, FakeSource, bundled_scripts

OPENING = "您好，国家电网95598，工号1024，很高兴为您服务。"
KEYS = {"keys": [{"key": "agent-key-123", "role": "agent", "name": "desk-1"},
                 {"key": "super-key-123", "role": "supervisor", "name": "sup"},
                 {"key": "train-key-123", "role": "trainer", "name": "trainer"}]}


@pytest.fixture(scope="module")
def signals() -> dict:
    return {"taboo": LexiconTaboo(), "risk": PhraseRisk(), "opening": PhraseOpening()}


def build(tmp_path: Path, signals: dict, keys: ApiKeys | None = None, **settings_kw) -> tuple[TestClient, FakeSource]:
    source = FakeSource(FakeRetriever(bundled_scripts()), "1")
    engine = AssistEngine(None, **signals)
    settings = ServiceSettings(kb_dir=None, feedback_db=tmp_path / "fb.sqlite", reload_interval_s=0, **settings_kw)
    feedback = FeedbackStore(settings.feedback_db, FeedbackPolicy(min_evidence=2))
    app = create_app(settings, engine=engine, source=source, keys=keys or ApiKeys(), feedback=feedback)
    return TestClient(app), source


@pytest.fixture()
def client(tmp_path: Path, signals: dict):
    c, _ = build(tmp_path, signals)
    with c:
        yield c


def test_rest_flow_suggestions_state_and_end(client: TestClient) -> None:
    r = client.post("/v1/calls/C001/turns", json={"role": "agent", "text": OPENING})
    assert r.status_code == 200 and r.json()["suggestions"] == [] and r.json()["alerts"] == []
    r = client.post("/v1/calls/C001/turns", json={"role": "customer", "text": "喂 我家停电了 整个屋子都没电"})
    body = r.json()
    assert r.status_code == 200
    top = body["suggestions"][0]
    assert {"id", "scenario", "script", "score"} <= set(top) and top["id"] == "K0001"
    assert body["kb_version"] == "1" and body["latency_ms"] >= 0
    state = client.get("/v1/calls/C001").json()
    assert state["n_turns"] == 2 and state["scenario"]["id"] == "K0001" and "K0001" in state["shown"]
    assert client.get("/v1/calls").json()["calls"] == ["C001"]
    end = client.delete("/v1/calls/C001")
    assert end.status_code == 200 and end.json() == {"call_id": "C001", "ended": True, "n_turns": 2}
    assert client.get("/v1/calls/C001").status_code == 404
    gone = client.delete("/v1/calls/C001")
    assert gone.status_code == 404 and "no live call" in gone.json()["detail"]


def test_taboo_and_risk_alerts_and_supervisor_stream(client: TestClient) -> None:
    with client.websocket_connect("/v1/supervisor/stream?since=0") as sup:
        r = client.post("/v1/calls/C002/turns", json={"role": "agent", "text": "说了多少遍了，你自己不会看吗"})
        alerts = r.json()["alerts"]
        assert [a["type"] for a in alerts if a["type"] == "taboo"] == ["taboo"]
        assert any(a["type"] == "reminder" and a["code"] == "opening_missing" for a in alerts)
        r = client.post("/v1/calls/C002/turns",
                        json={"role": "customer", "text": "你们再不来修我就打12398，还要找记者曝光你们"})
        body = r.json()
        risk = [a for a in body["alerts"] if a["type"] == "complaint_risk"]
        assert risk and risk[0]["risk"] >= 0.6 and body["call_risk"] >= 0.6
        assert any("敏感场景" in s["tags"] for s in body["suggestions"])
        pushed = json.loads(sup.receive_text())
        assert pushed["call_id"] == "C002" and pushed["type"] == "complaint_risk" and pushed["seq"] >= 1
    polled = client.get("/v1/supervisor/alerts", params={"since": 0}).json()
    assert polled["alerts"][0]["call_id"] == "C002"


def test_websocket_flow_with_errors_feedback_and_end(client: TestClient) -> None:
    with client.websocket_connect("/v1/calls/W1/stream") as ws:
        ws.send_text(json.dumps({"role": "customer", "text": "这个月电费怎么这么多"}))
        reply = json.loads(ws.receive_text())
        assert reply["suggestions"][0]["id"] == "K0038" and reply["alerts"] == []
        ws.send_text("{not json")
        err = json.loads(ws.receive_text())
        assert err["status"] == 422 and "not JSON" in err["message"]
        ws.send_text(json.dumps({"role": "robot", "text": "x"}))
        err = json.loads(ws.receive_text())
        assert err["status"] == 422 and "role" in err["message"]
        ws.send_text(json.dumps({"type": "feedback", "script_id": "K0038", "action": "accepted"}))
        assert json.loads(ws.receive_text())["recorded"] is True
        ws.send_text(json.dumps({"role": "customer", "text": "比上个月翻了一倍"}))
        assert json.loads(ws.receive_text())["turn"] == 1
        ws.send_text(json.dumps({"type": "end"}))
        assert json.loads(ws.receive_text()) == {"call_id": "W1", "ended": True, "n_turns": 2}
    assert client.get("/v1/calls/W1").status_code == 404


def test_malformed_turns_get_422_with_a_clear_message(client: TestClient) -> None:
    cases = [
        ({"role": "customer"}, "text"),
        ({"role": "robot", "text": "hi"}, "must be agent or customer"),
        ({"role": "customer", "text": "   "}, "must not be blank"),
        ({"role": "customer", "text": "电" * 2001}, "at most 2000"),
        ({"role": "customer", "text": 5}, "text"),
        ([1, 2], "body"),
    ]
    for payload, needle in cases:
        r = client.post("/v1/calls/C003/turns", json=payload)
        assert r.status_code == 422, payload
        assert needle in r.json()["message"], (payload, r.json())
    r = client.post("/v1/calls/C003/turns", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid request"
    assert client.post("/v1/calls/bad%20id!/turns", json={"role": "agent", "text": "hi"}).status_code == 422
    assert client.get("/v1/calls/nobody").status_code == 404


def test_request_size_limit(tmp_path: Path, signals: dict) -> None:
    c, _ = build(tmp_path, signals, max_body_bytes=1024)
    with c:
        r = c.post("/v1/calls/C4/turns", content=json.dumps({"role": "customer", "text": "停电" * 400}).encode(),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and "at most 1024 bytes" in r.json()["message"]

        def chunks():
            yield b'{"role": "customer", "text": "'
            for _ in range(50):
                yield "停电".encode() * 20
            yield b'"}'

        r = c.post("/v1/calls/C4/turns", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "at most 1024 bytes" in r.json()["message"]

        def small():  # a chunked body within the limit streams through to the route
            yield b'{"role": "customer", '
            yield '"text": "我家停电了"}'.encode()

        r = c.post("/v1/calls/C5/turns", content=small(), headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["turn"] == 0


def test_session_limit_evicts_the_oldest_idle_call(tmp_path: Path, signals: dict) -> None:
    c, _ = build(tmp_path, signals, max_sessions=2)
    with c:
        for call in ("A", "B", "C"):
            assert c.post(f"/v1/calls/{call}/turns", json={"role": "customer", "text": "我家停电了"}).status_code == 200
        assert c.get("/v1/calls/A").status_code == 404
        assert c.get("/v1/calls/C").status_code == 200
        assert c.get("/v1/calls").json()["evicted"] == 1


def test_hot_reload_swaps_the_index(tmp_path: Path, signals: dict) -> None:
    c, source = build(tmp_path, signals)
    with c:
        assert c.get("/healthz").json()["kb_version"] == "1"
        source.set(FakeRetriever(bundled_scripts(("K0038",))), "2")
        r = c.post("/v1/admin/reload")
        assert r.json()["reloaded"] is True and r.json()["kb_version"] == "2"
        body = c.post("/v1/calls/R1/turns", json={"role": "customer", "text": "我家停电了 整户没电"}).json()
        assert "K0001" not in [s["id"] for s in body["suggestions"]] and body["kb_version"] == "2"
        assert c.post("/v1/admin/reload").json()["reloaded"] is False


def test_feedback_endpoint_and_report(client: TestClient) -> None:
    client.post("/v1/calls/F1/turns", json={"role": "customer", "text": "这个月电费怎么这么多"})
    for action in ("accepted", "accepted", "used"):
        r = client.post("/v1/calls/F1/feedback", json={"script_id": "K0038", "action": action})
        assert r.status_code == 200 and r.json()["recorded"]
    bad = client.post("/v1/calls/F1/feedback", json={"script_id": "K0038", "action": "liked"})
    assert bad.status_code == 422 and "action" in bad.json()["message"]
    client.app.state.feedback.flush()
    rows = {r["script_id"]: r for r in client.get("/v1/feedback/report").json()["scripts"]}
    assert rows["K0038"]["accepted"] == 2 and rows["K0038"]["used"] == 1 and rows["K0038"]["shown"] == 1
    assert rows["K0038"]["adjustment"] > 0


def test_api_keys_and_roles(tmp_path: Path, signals: dict) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS), encoding="utf-8")
    c, _ = build(tmp_path, signals, keys=ApiKeys.load(path, env=""))
    turn = {"role": "customer", "text": "我家停电了"}
    with c:
        assert c.get("/healthz").status_code == 200  # health stays open for load balancers
        assert c.post("/v1/calls/K1/turns", json=turn).status_code == 401
        assert c.post("/v1/calls/K1/turns", json=turn, headers={"X-API-Key": "wrong-key-123"}).status_code == 401
        agent = {"X-API-Key": "agent-key-123"}
        assert c.post("/v1/calls/K1/turns", json=turn, headers=agent).status_code == 200
        assert c.post("/v1/calls/K1/turns", json=turn,
                      headers={"Authorization": "Bearer agent-key-123"}).status_code == 200
        assert c.get("/v1/supervisor/alerts", headers=agent).status_code == 403
        assert c.post("/v1/admin/reload", headers=agent).status_code == 403
        sup = {"X-API-Key": "super-key-123"}
        assert c.get("/v1/supervisor/alerts", headers=sup).status_code == 200
        assert c.post("/v1/calls/K1/turns", json=turn, headers=sup).status_code == 403
        assert c.post("/v1/admin/reload", headers={"X-API-Key": "train-key-123"}).status_code == 200
        with pytest.raises(WebSocketDisconnect), c.websocket_connect("/v1/calls/K1/stream") as ws:  # no key
            ws.receive_text()
        with c.websocket_connect("/v1/calls/K1/stream?api_key=agent-key-123") as ws:
            ws.send_text(json.dumps(turn))
            assert "suggestions" in json.loads(ws.receive_text())
    with pytest.raises(AuthConfigError, match="role"):
        ApiKeys.load(None, env="some-long-key:boss")
    assert ApiKeys.load(None, env="some-long-key:agent").enabled


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    for path in ("/v1/calls/{call_id}/turns", "/v1/calls/{call_id}", "/v1/calls/{call_id}/feedback",
                 "/v1/supervisor/alerts", "/v1/admin/reload", "/healthz"):
        assert path in spec["paths"], path
    assert "TurnIn" in spec["components"]["schemas"] and "TurnOut" in spec["components"]["schemas"]
