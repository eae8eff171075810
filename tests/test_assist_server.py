"""The assist service in a real uvicorn process on 127.0.0.1: REST, WebSocket, hot reload under load, auth."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.assist_support import uvicorn_server

FACTORY = ["-m", "uvicorn", "tests.assist_fake_app:create", "--factory", "--log-level", "warning"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("assist-server")
    index = tmp / "index.txt"
    index.write_text("K0001,K0038,K0123,K0124,K0125,K0133,K0135", encoding="utf-8")
    keys = tmp / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key": "agent-key-123", "role": "agent"},
                                         {"key": "super-key-123", "role": "supervisor"}]}), encoding="utf-8")
    env = {"ASSIST_TEST_INDEX": str(index), "KEFU_ASSIST_KEYS_FILE": str(keys),
           "KEFU_ASSIST_FEEDBACK_DB": str(tmp / "fb.sqlite"), "KEFU_ASSIST_RELOAD_INTERVAL_S": "0.5",
           "KEFU_API_KEYS": "", "KEFU_HOME": str(tmp)}
    with uvicorn_server(FACTORY, env) as url:
        yield url, index


AGENT = {"X-API-Key": "agent-key-123"}


def test_rest_flow_over_http(server) -> None:
    url, _ = server
    with httpx.Client(base_url=url, headers=AGENT, timeout=10) as c:
        r = c.post("/v1/calls/S1/turns", json={"role": "customer", "text": "喂 我家停电了 整个屋子都没电"})
        assert r.status_code == 200 and r.json()["suggestions"][0]["id"] == "K0001"
        r = c.post("/v1/calls/S1/turns", json={"role": "agent", "text": "这不归我们管，你找别人去"})
        assert any(a["type"] == "taboo" for a in r.json()["alerts"])
        bad = c.post("/v1/calls/S1/turns", json={"role": "customer", "text": ""})
        assert bad.status_code == 422 and "text" in bad.json()["message"]
        assert c.post("/v1/calls/S1/turns", json={"role": "customer", "text": "x"},
                      headers={"X-API-Key": "nope-nope-nope"}).status_code == 401
        assert c.delete("/v1/calls/S1").status_code == 200
        assert c.get("/v1/calls/S1").status_code == 404
        assert c.get("/docs").status_code == 200


def test_websocket_and_supervisor_stream_over_real_sockets(server) -> None:
    url, _ = server
    ws_url = url.replace("http://", "ws://")

    async def scenario() -> tuple[dict, dict]:
        async with websockets.connect(ws_url + "/v1/supervisor/stream?since=0&api_key=super-key-123") as sup, \
                websockets.connect(ws_url + "/v1/calls/S2/stream", additional_headers=AGENT) as ws:
            await ws.send(json.dumps({"role": "customer", "text": "我要投诉你们，还要打12345市长热线"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while True:  # since=0 replays earlier alerts of other tests' calls first
                pushed = json.loads(await asyncio.wait_for(sup.recv(), 10))
                if pushed["call_id"] == "S2":
                    return reply, pushed

    reply, pushed = asyncio.run(scenario())
    assert any(a["type"] == "complaint_risk" for a in reply["alerts"])
    assert pushed["call_id"] == "S2" and pushed["type"] == "complaint_risk"


def test_hot_reload_under_load_fails_no_request(server) -> None:
    url, index = server
    statuses: list[int] = []
    versions: list[str | None] = []

    async def load(stop_at: float) -> None:
        async with httpx.AsyncClient(base_url=url, headers=AGENT, timeout=10) as c:
            async def caller(n: int) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    r = await c.post(f"/v1/calls/L{n}/turns", json={"role": "customer", "text": f"电费怎么这么多{i}"})
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        versions.append(r.json()["kb_version"])
                    i += 1
            await asyncio.gather(*(caller(n) for n in range(8)))

    async def main() -> None:
        stop_at = time.monotonic() + 4.0
        task = asyncio.create_task(load(stop_at))
        await asyncio.sleep(0.8)
        index.write_text("K0001,K0123,K0124,K0125,K0133,K0135", encoding="utf-8")  # K0038 retired
        await task

    asyncio.run(main())
    assert statuses and set(statuses) == {200}
    assert versions[-1] == "K0001,K0123,K0124,K0125,K0133,K0135"  # served the new index without a restart
    with httpx.Client(base_url=url, headers=AGENT, timeout=10) as c:
        r = c.post("/v1/calls/L99/turns", json={"role": "customer", "text": "这个月电费怎么这么多"}).json()
        assert "K0038" not in [s["id"] for s in r["suggestions"]]


@pytest.fixture(scope="module")
def real_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base imported from the bundled scripts with the real index (knowledge_base.index)."""
    pytest.importorskip("knowledge_base.index.manager")
    from knowledge_base.kb import KnowledgeBase

    repo = Path(__file__).resolve().parents[1]
    kb_dir = tmp_path_factory.mktemp("real-kb") / "kb"
    with KnowledgeBase.open(kb_dir, create=True) as kb:
        kb.import_file(repo / "knowledge_base" / "data" / "scripts.jsonl")
    return kb_dir


@pytest.mark.slow
def test_kefu_serve_with_a_real_knowledge_base_and_kb_writes(real_kb: Path, tmp_path: Path) -> None:
    """`kefu serve --kb DIR` over the bundled scripts; a trainer's new script is served without a restart."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"key": "agent-key-123", "role": "agent"},
                                         {"key": "train-key-123", "role": "trainer"}]}), encoding="utf-8")
    env = {"KEFU_HOME": str(tmp_path / "home"), "KEFU_API_KEYS": ""}
    args = ["-m", "kefu", "serve", "--kb", str(real_kb), "--keys", str(keys), "--reload-interval", "0.5"]
    with uvicorn_server(args, env, timeout=120) as url, httpx.Client(base_url=url, timeout=60) as c:
        health = c.get("/healthz").json()
        assert health["index"] == "loaded" and health["kb_version"].startswith("1") and health["auth"]
        r = c.post("/v1/calls/R1/turns", json={"role": "customer", "text": "这个月电费怎么这么多"}, headers=AGENT)
        assert "K0038" in [s["id"] for s in r.json()["suggestions"]]
        r = c.post("/v1/calls/R1/turns", json={"role": "customer", "text": "再不处理我就打12398投诉你们"},
                   headers=AGENT).json()
        assert any(a["type"] == "complaint_risk" for a in r["alerts"])
        assert any("敏感场景" in s["tags"] for s in r["suggestions"])
        new = {"id": "K9001", "scenario": "光伏电站鸽子筑巢清理", "category": "新能源",
               "questions": ["屋顶光伏板下面全是鸽子窝怎么办", "鸽子在光伏板底下做窝了", "光伏板下面鸽子太多了"],
               "script": "您好，光伏板下的鸽子窝请联系安装商清理，我们为您登记。", "tags": []}
        assert c.post("/v1/kb/scripts", json={"scripts": [new]}, headers=AGENT).status_code == 403
        w = c.post("/v1/kb/scripts", json={"scripts": [new]}, headers={"X-API-Key": "train-key-123"})
        assert w.status_code == 200, w.text
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = c.post("/v1/calls/R2/turns", json={"role": "customer", "text": "鸽子在光伏板底下做窝了"},
                       headers=AGENT).json()
            if "K9001" in [s["id"] for s in r["suggestions"]]:
                break
            c.delete("/v1/calls/R2", headers=AGENT)
            time.sleep(0.5)
        assert "K9001" in [s["id"] for s in r["suggestions"]]
        assert not r["kb_version"].startswith("1@")
        # A change made outside the service (`kefu kb import` by a trainer) is picked up by the watcher.
        from knowledge_base.kb import KnowledgeBase
        from knowledge_base.schema import Script

        with KnowledgeBase.open(real_kb) as kb:
            kb.import_scripts([Script(id="K9002", scenario="电动自行车充电起火咨询", category="新能源",
                                      questions=["电动车充电器着火了怎么办", "楼道里电瓶车充电冒烟了"],
                                      script="您好，请立即断开电源并远离，必要时拨打119。")])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = c.post("/v1/calls/R3/turns", json={"role": "customer", "text": "电动车充电器着火了怎么办"},
                       headers=AGENT).json()
            if "K9002" in [s["id"] for s in r["suggestions"]]:
                break
            c.delete("/v1/calls/R3", headers=AGENT)
            time.sleep(0.5)
        assert "K9002" in [s["id"] for s in r["suggestions"]]


@pytest.mark.slow
def test_replay_prints_what_the_agent_saw_and_the_hit_rate(real_kb: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from assist.cli import app

    calls = [{"call_id": "P1", "scenario": "电费突然增高", "turns": [
        {"role": "agent", "text": "您好，国家电网95598，工号1024，很高兴为您服务。"},
        {"role": "customer", "text": "这个月电费怎么这么多"},
        {"role": "agent", "text": "说了多少遍了，你自己不会看吗"},
        {"role": "customer", "text": "我要投诉你们，打12398"}]},
        {"call_id": "P2", "turns": [{"role": "customer", "text": "我家没电了"}]}]
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in calls), encoding="utf-8")
    result = CliRunner().invoke(app, ["replay", str(path), "--kb", str(real_kb)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "=== call P1 (scenario: 电费突然增高)" in out and "K0038" in out
    assert "! taboo" in out and "! complaint_risk" in out and " ms)" in out
    assert "latency per turn: median" in out
    assert "right script within the first 2 customer turns: 1/1 (100.0%)" in out


def test_several_workers_share_call_state(tmp_path: Path) -> None:
    index = tmp_path / "index.txt"
    index.write_text("K0001,K0038,K0124", encoding="utf-8")
    env = {"ASSIST_TEST_INDEX": str(index), "KEFU_ASSIST_SESSION_DB": str(tmp_path / "sessions.sqlite"),
           "KEFU_ASSIST_ALERTS_DB": str(tmp_path / "alerts.sqlite"), "KEFU_ASSIST_FEEDBACK_DB": "",
           "KEFU_API_KEYS": "", "KEFU_ASSIST_KEYS_FILE": "", "KEFU_HOME": str(tmp_path)}
    turns = [("agent", "您好，国家电网95598"), ("customer", "我家停电了"), ("agent", "请您提供户号"),
             ("customer", "户号是123456"), ("customer", "你们再不来我就打12398")]
    with uvicorn_server([*FACTORY, "--workers", "2"], env, timeout=90) as url:
        pids = set()
        for role, text in turns:
            with httpx.Client(base_url=url, timeout=10) as c:  # a new connection each time: any worker
                r = c.post("/v1/calls/MW1/turns", json={"role": role, "text": text})
                assert r.status_code == 200
                pids.add(c.get("/healthz").json()["pid"])
        assert r.json()["turn"] == len(turns) - 1  # every worker saw the turns before it
        for _ in range(4):
            with httpx.Client(base_url=url, timeout=10) as c:
                state = c.get("/v1/calls/MW1").json()
                assert state["n_turns"] == len(turns)
                alerts = c.get("/v1/supervisor/alerts").json()["alerts"]
                assert [a["call_id"] for a in alerts] == ["MW1"]
