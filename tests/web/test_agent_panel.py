"""坐席助手 in the browser and over HTTP: a live call with script cards, feedback, alerts and the risk meter;
the training replay of an uploaded transcript file; refusals for roles without "turns"."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from assist.web.replay import ReplayFileError, parse_upload
from tests.web.conftest import KEYS, screenshot

pytestmark = pytest.mark.browser

BILL = "这个月电费怎么这么多"
THREAT = "再不处理我就打12398投诉你们"
TABOO = "这个不归我们管，你找别人去"  # 不归我们管 and 你找别人去 are in qa_inspect/data/taboo_lexicon.csv
OFF_TOPIC = "请问火星上的天气预报怎么查询"

REPLAY_CALL = {"call_id": "AP-TRAIN-1", "agent_id": "A07", "labels": {"script_id": "K0038"}, "turns": [
    {"role": "agent", "text": "您好，国家电网95598，工号1001，很高兴为您服务", "start": 0.0, "end": 3.0},
    {"role": "customer", "text": "你好，这个月电费怎么这么多，比上个月多了一倍", "start": 3.5, "end": 6.0},
    {"role": "agent", "text": "请您提供一下户号，我帮您查询", "start": 6.5, "end": 8.0},
    {"role": "customer", "text": "再不给我说清楚我就打12398投诉你们", "start": 8.5, "end": 9.0},
]}
REPLAY_OTHER = {"call_id": "AP-TRAIN-2", "turns": [{"role": "客户", "text": "我家停电了，整个屋子都没电"},
                                                   {"role": "坐席", "text": TABOO}]}


def _jsonl(*objs: object) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


def _feedback(home: Path, call_id: str, timeout: float = 8.0, want: int = 1) -> list[tuple[str, str]]:
    """(script_id, action) of the agent's feedback on a call, as the service wrote it (writes are queued)."""
    db = home / "assist" / "feedback.sqlite"
    deadline = time.monotonic() + timeout
    rows: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as con:
                rows = con.execute("SELECT script_id, action FROM feedback WHERE call_id = ? AND source = 'agent' "
                                   "ORDER BY id", (call_id,)).fetchall()
            if len(rows) >= want:
                return rows
        time.sleep(0.1)
    return rows


# ------------------------------------------------------------------------------------------ HTTP


def test_roles_without_turns_are_refused(console_url: str) -> None:
    with httpx.Client(base_url=console_url, timeout=30, follow_redirects=False) as c:
        r = c.get("/console/agent/replay")
        assert r.status_code == 303 and "/console/login" in r.headers["location"]
        for role in ("trainer", "qa"):
            c.cookies.set("kefu_key", KEYS[role][0])
            for path in ("/console/agent/", "/console/agent/replay"):
                r = c.get(path)
                assert r.status_code == 403 and "无权" in r.text and "turns" in r.text, (role, path)
            r = c.post("/console/agent/api/replay", files={"file": ("a.jsonl", _jsonl(REPLAY_CALL).encode())})
            assert r.status_code == 403
        for role in ("agent", "admin"):
            c.cookies.set("kefu_key", KEYS[role][0])
            r = c.get("/console/agent/")
            assert r.status_code == 200 and "推荐话术" in r.text and "投诉风险" in r.text
        assert c.get("/console/agent/static/agent.js").status_code == 200
        assert c.get("/console/agent/static/..%2Fpages.py").status_code == 404


def test_replay_upload_lists_calls_and_line_numbered_problems(console_url: str) -> None:
    with httpx.Client(base_url=console_url, timeout=30) as c:
        c.cookies.set("kefu_key", KEYS["agent"][0])

        def up(name: str, text: str | bytes) -> httpx.Response:
            data = text.encode("utf-8") if isinstance(text, str) else text
            return c.post("/console/agent/api/replay", files={"file": (name, data)})

        body = _jsonl(REPLAY_CALL) + '{"call_id": "AP-BAD", "turns": [\n' + _jsonl(
            {"call_id": "AP-BAD-2", "turns": [{"role": "经理", "text": "你好"}]}, REPLAY_OTHER)
        r = up("mixed.jsonl", body)
        assert r.status_code == 200, r.text
        data = r.json()
        assert [c["call_id"] for c in data["calls"]] == ["AP-TRAIN-1", "AP-TRAIN-2"]
        first = data["calls"][0]
        assert first["n_turns"] == 4 and first["script_id"] == "K0038" and first["agent_id"] == "A07"
        assert first["turns"][1] == {"role": "customer", "text": REPLAY_CALL["turns"][1]["text"], "start": 3.5,
                                     "end": 6.0}
        assert data["calls"][1]["turns"][0]["role"] == "customer"  # Chinese role names accepted
        texts = [e["text"] for e in data["errors"]]
        assert data["n_bad"] == 2 and texts[0].startswith("第 2 行：不是有效的 JSON")
        assert texts[1].startswith("第 3 行（通话 AP-BAD-2）：第 1 句的角色必须是") and "经理" in texts[1]

        # Per-turn CSV: each call's rows grouped; a bad row is reported at its own line.
        csv = "call_id,role,text,start,end\nAP-CSV-1,客户,我家停电了,0,2\nAP-CSV-1,坐席,您好,2.5,3\n" \
              "AP-CSV-2,客户,电费太高了,,\nAP-CSV-2,老板,嗯,,\n"
        data = up("turns.csv", csv).json()
        assert [c["call_id"] for c in data["calls"]] == ["AP-CSV-1"]
        assert data["errors"][0]["line"] == 5 and "老板" in data["errors"][0]["text"]

        # Nothing playable: a 422 with the first problem and every line.
        r = up("bad.jsonl", '{"call_id": "X1"}\nnot json\n')
        assert r.status_code == 422
        assert "第 1 行（通话 X1）：缺少 turns" in r.json()["message"]
        assert [e["line"] for e in r.json()["errors"]] == [1, 2]
        # The file as a whole: format, header, encoding, emptiness, no file.
        assert "无法识别文件格式" in up("notes.docx", b"PK\x03\x04").json()["message"]
        header = up("t.csv", "role,text\n客户,你好\n").json()["message"]
        assert "第 1 行：CSV 表头必须包含 call_id、role、text" in header
        assert "空文件" in up("empty.jsonl", b"\n").json()["message"]
        gbk = "call_id,role,text\nAP-GBK,客户,我家停电了\n".encode("gb18030")
        assert up("gbk.csv", gbk).json()["calls"][0]["turns"][0]["text"] == "我家停电了"
        r = c.post("/console/agent/api/replay", data={"x": "1"})
        assert r.status_code == 422 and r.json()["message"] == "请选择要回放的通话文件"


def test_parse_upload_text_format_and_unknown_messages() -> None:
    data = parse_upload("# call_id: AP-TXT\n坐席：您好\n客户：我家停电了\n乱写一行\n".encode(), "call.txt")
    assert data["calls"] == [] and data["errors"][0]["line"] == 4
    assert "应为“坐席：…”或“客户：…”格式" in data["errors"][0]["text"]
    bad_start = {"call_id": "AP-T", "turns": [{"role": "agent", "text": "好", "start": "abc"}]}
    data = parse_upload(_jsonl(bad_start).encode(), "x.ndjson")
    assert "第 1 句的开始时间（start）必须是秒数" in data["errors"][0]["text"]
    with pytest.raises(ReplayFileError, match="既不是 UTF-8 也不是 GB18030"):
        parse_upload(b"\xff\xfe\x00\x81\x00", "x.jsonl")


# ------------------------------------------------------------------------------------------ browser


def test_live_call_cards_feedback_alerts_and_end(page_as, console_url: str, console_home: Path) -> None:
    call_id = "AP-LIVE-1"
    page = page_as("agent")
    page.goto("/console/agent/")
    assert page.input_value("#call-id").startswith("C")  # a generated call id is shown…
    page.fill("#call-id", call_id)  # …and the telephony system's id may be typed instead
    text = page.locator("#turn-text")

    # A customer turn nothing in the library answers: the knowledge-gap state.
    text.fill(OFF_TOPIC)
    text.press("Enter")
    page.wait_for_selector("#gap-box:not([hidden])")
    assert "知识缺口" in page.inner_text("#gap-box") and OFF_TOPIC in page.inner_text("#gap-box")
    assert page.input_value("#call-id") == call_id and page.is_editable("#call-id") is False

    # The bill question: the bundled script K0038 with its scenario, score and why.
    text.fill(BILL)
    text.press("Enter")
    card = page.locator('#cards .sugg[data-id="K0038"]')
    card.wait_for()
    assert page.is_hidden("#gap-box")
    assert "电费突然增高" in card.inner_text() and "匹配度" in card.inner_text() and "户号" in card.inner_text()
    assert "本句匹配" in card.locator(".sugg-why").inner_text()
    assert "电费" in card.locator(".sugg-why mark").all_inner_texts()
    assert page.locator(".turn.customer mark.hl", has_text="电费").count() == 1  # matched terms in the transcript
    card.locator("[data-act=accepted]").click()
    page.wait_for_selector('#cards .sugg[data-id="K0038"].accepted')
    assert "已采纳" in card.inner_text()

    # A threat to call the regulator: complaint-risk alert, meter over the threshold, a sensitive script.
    text.fill(THREAT)
    text.press("Enter")
    risk = page.locator('#alerts .agent-alert[data-type="complaint_risk"]')
    risk.wait_for()
    assert "投诉风险升高" in risk.inner_text() and "12398" in risk.locator("mark").first.inner_text()
    assert float(page.inner_text("#risk-value")) >= 0.6 and page.inner_text("#risk-level") == "高"
    assert page.locator("#risk-trend circle").count() == 3
    sensitive = page.locator('#cards .sugg[data-id="K0124"]')
    assert "敏感场景" in sensitive.locator(".tag.sensitive").inner_text()
    assert page.locator('#cards-old .sugg[data-id="K0038"]').count() == 1  # earlier cards kept in the history

    # The agent answers with taboo phrases: an alert quoting them, marked in the transcript.
    page.click(".role-btn[data-role=agent]")
    text.fill(TABOO)
    text.press("Enter")
    taboo = page.locator('#alerts .agent-alert[data-type="taboo"]')
    taboo.wait_for()
    assert "不归我们管" in taboo.inner_text() and "服务忌语" in taboo.inner_text()
    assert page.locator(".turn.agent mark.bad", has_text="不归我们管").count() == 1
    # It is the agent's first turn and lacks the standard opening: a reminder too.
    assert "标准开头语" in page.locator('#alerts .agent-alert[data-type="reminder"]').inner_text()
    assert page.inner_text("#alert-count") == "3"

    # Copy records "used"; dismiss records "dismissed" and the card goes away.
    sensitive.locator("[data-act=copy]").click()
    page.wait_for_selector('#cards .sugg[data-id="K0124"] .sugg-state:has-text("已使用")')
    others = page.locator("#cards .sugg").all()
    dismiss_id = next(el.get_attribute("data-id") for el in others if el.get_attribute("data-id") != "K0124")
    page.locator(f'#cards .sugg[data-id="{dismiss_id}"] [data-act=dismissed]').click()
    page.wait_for_selector(f'#cards .sugg[data-id="{dismiss_id}"]', state="detached")
    screenshot(page, "agent_panel")
    rows = _feedback(console_home, call_id, want=3)
    assert ("K0038", "accepted") in rows and ("K0124", "used") in rows and (dismiss_id, "dismissed") in rows
    with httpx.Client(base_url=console_url, timeout=30, headers={"X-API-Key": KEYS["admin"][0]}) as c:
        report = {r["script_id"]: r for r in c.get("/v1/feedback/report").json()["scripts"]}
        assert report["K0038"]["accepted"] >= 1

    # A reload loses nothing: the call, its alerts and the cards (with their verdicts) come back.
    page.reload()
    page.wait_for_selector(".turn.agent mark.bad")
    assert page.locator("#transcript .turn").count() == 4 and "已恢复" in page.inner_text("#call-note")
    assert page.locator('#cards .sugg[data-id="K0124"]').count() == 1
    assert page.locator(f'#cards .sugg[data-id="{dismiss_id}"]').count() == 0
    assert page.inner_text("#alert-count") == "3" and page.inner_text("#risk-level") == "高"

    # End of call: the summary, and the service has dropped the call.
    page.click("#end-call")
    page.wait_for_selector("#call-note .summary-box")
    summary = page.inner_text("#call-note")
    assert "已结束" in summary and "共 4 句" in summary and "采纳 1 条" in summary and "告警 3 条" in summary
    assert page.is_disabled("#turn-text")
    with httpx.Client(base_url=console_url, timeout=30, headers={"X-API-Key": KEYS["agent"][0]}) as c:
        assert c.get(f"/v1/calls/{call_id}").status_code == 404
    page.click("#new-call")
    assert page.input_value("#call-id") != call_id and page.locator("#transcript .turn").count() == 0


def test_training_replay_steps_through_an_uploaded_file(page_as, tmp_path: Path) -> None:
    page = page_as("agent")
    page.goto("/console/agent/replay")

    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"call_id": "AP-B1", "turns": "none"}\n{oops\n', encoding="utf-8")
    page.set_input_files("#replay-file", str(bad))
    page.click("#replay-upload button[type=submit]")
    error = page.locator("#replay-result .error-box")
    error.wait_for()
    assert "第 1 行（通话 AP-B1）：turns 必须是轮次列表" in error.inner_text()
    assert "第 2 行：不是有效的 JSON" in error.inner_text()
    assert page.is_disabled("#replay-next")

    good = tmp_path / "training.jsonl"
    good.write_text(_jsonl(REPLAY_CALL, REPLAY_OTHER), encoding="utf-8")
    page.set_input_files("#replay-file", str(good))
    page.click("#replay-upload button[type=submit]")
    page.wait_for_selector("#replay-result .ok-box")
    assert "2 通通话" in page.inner_text("#replay-result")
    assert page.locator("#replay-call option").all_inner_texts()[0].startswith("AP-TRAIN-1 · 4 句")
    assert "K0038" in page.inner_text("#replay-expect")

    page.click("#replay-next")
    page.click("#replay-next")
    page.locator('#cards .sugg[data-id="K0038"]').wait_for()
    assert page.locator("#transcript .turn").count() == 2 and "已播放 2 / 4 句" in page.inner_text("#replay-progress")
    assert "第 2 句后出现" in page.inner_text("#replay-expect")

    page.select_option("#replay-speed", "4")
    page.click("#replay-auto")
    page.wait_for_selector("#replay-progress:has-text('回放结束')")
    assert page.locator("#transcript .turn").count() == 4
    page.locator('#alerts .agent-alert[data-type="complaint_risk"]').wait_for()
    assert "已结束" in page.inner_text("#call-note") and page.inner_text("#call-note").count("TR-AP-TRAIN-1") == 1
    screenshot(page, "agent_replay")

    # Another call of the file starts afresh; its agent turn raises the taboo alert as in a live call.
    page.select_option("#replay-call", "1")
    assert page.locator("#transcript .turn").count() == 0 and page.inner_text("#alert-count") == "0"
    page.click("#replay-next")
    page.click("#replay-next")
    page.locator('#alerts .agent-alert[data-type="taboo"]').wait_for()
