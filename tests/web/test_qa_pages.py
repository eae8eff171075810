"""The 质检 pages in the browser and over HTTP: upload and score with progress, results, call page, verdicts,
appeals, reports with charts, and the refusals and error messages a user sees."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import KEYS, screenshot

pytestmark = pytest.mark.browser


def _call(call_id: str, agent: str, turns: list[tuple[str, str]], date: str = "2026-07-14") -> str:
    return json.dumps({"call_id": call_id, "agent_id": agent, "date": date,
                       "turns": [{"role": r, "text": t} for r, t in turns]}, ensure_ascii=False)


OPEN = ("agent", "您好，国家电网95598，工号1024为您服务。")
CLOSE = ("agent", "请问还有别的需要吗？感谢您的来电，再见。")
# Six calls, the fifth line cut off (a malformed line): the upload must report it by its line number.
LINES = [
    _call("QAT-001", "A201", [OPEN, ("customer", "我家停电了，你们什么时候来修？"),
                              ("agent", "这个不归我们管，你找物业去。"), ("customer", "你们怎么这样？"), CLOSE]),
    _call("QAT-002", "A202", [OPEN, ("customer", "三天停了两次电，再不解决我就打12398投诉你们！"),
                              ("agent", "请问您的户号是多少？"), ("customer", "你们就会问户号。"), CLOSE]),
    _call("QAT-003", "A201", [OPEN, ("customer", "我想查一下上个月的电费。"),
                              ("agent", "好的，请您提供一下户号，我帮您查询。"), ("customer", "好的谢谢。"), CLOSE]),
    _call("QAT-004", "A203", [OPEN, ("customer", "我们小区停电了。"),
                              ("agent", "非常抱歉给您带来不便，请问您的地址是？抢修人员会在45分钟内到达现场。"),
                              ("customer", "好的。"), CLOSE]),
    '{"call_id": "QAT-005", "agent_id": "A202", "turns": [{"role": "agent", "text": "您好',
    _call("QAT-006", "A202", [("agent", "喂。"), ("customer", "我要问一下峰谷电价怎么算。"),
                              ("agent", "这个你去营业厅问吧。"), ("customer", "好吧。")]),
]


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qa-upload") / "今日通话.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def _client(console_url: str, role: str) -> httpx.Client:
    c = httpx.Client(base_url=console_url, timeout=30, follow_redirects=False)
    c.cookies.set("kefu_key", KEYS[role][0])
    return c


def _wait_done(c: httpx.Client, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/console/qa/api/jobs/{job_id}").json()
        if not job["active"]:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_upload_score_review_appeal_and_reports_in_the_browser(page_as, console_url: str, upload_file: Path) -> None:
    page = page_as("qa")
    page.goto("/console/qa/upload")
    page.set_input_files("#file", str(upload_file))
    page.click("#upload-button")
    panel = page.locator("#job-panel")
    panel.locator(".job-state", has_text="已完成").wait_for(timeout=60_000)
    assert "已处理 6 / 6 通（100%），无法评分 1 行" in panel.inner_text()
    errors = panel.locator(".job-errors")
    assert "第 5 行" in errors.inner_text() and "JSON" in errors.inner_text()
    assert page.locator(".job-meter").get_attribute("aria-valuenow") == "100"
    screenshot(page, "qa_upload")

    # Results of this batch: five calls scored, the malformed line reported with its line number.
    panel.locator(".job-results").click()
    page.wait_for_url("**/console/qa/?job=*")
    assert "第 5 行" in page.inner_text(".job-error-lines")
    ids = page.locator("table.results tbody tr").evaluate_all("rows => rows.map(r => r.dataset.call)")
    assert sorted(ids) == ["QAT-001", "QAT-002", "QAT-003", "QAT-004", "QAT-006"]

    def scores() -> list[float]:
        return [float(t.split()[0]) for t in page.locator("table.results td.score").all_inner_texts()]

    assert scores() == sorted(scores())  # lowest first by default
    page.click("th a[data-sort=score]")
    page.wait_for_url("**dir=desc**")
    assert scores() == sorted(scores(), reverse=True) and scores()[0] > scores()[-1]
    row = page.locator("tr[data-call=QAT-002]")
    assert "需复核" in row.inner_text()  # the 12398 threat is picked for review
    screenshot(page, "qa_results")

    page.select_option("#f-rule", "taboo_serious")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**rule=taboo_serious**")
    ids = page.locator("table.results tbody tr").evaluate_all("rows => rows.map(r => r.dataset.call)")
    assert ids == ["QAT-001"]

    # The taboo call: the phrase is highlighted in its turn, with the rule and the deduction on hover.
    page.click("a:text('QAT-001')")
    page.wait_for_url("**/console/qa/calls/QAT-001")
    mark = page.locator("#turn-2 mark", has_text="不归我们管")
    assert mark.count() == 1
    title = mark.get_attribute("title")
    assert "taboo_serious" in title and "服务忌语" in title and "扣 20 分" in title
    assert "bad" in (mark.get_attribute("class") or "")
    assert page.locator("#turn-2 mark", has_text="你找物业去").count() == 1
    hit = page.locator("#review-form tr[data-hit]", has_text="不归我们管")
    ordinal = hit.get_attribute("data-hit")
    hit.locator("input[value=true]").check()
    page.fill("#manual-score-input", "55")
    page.fill("#review-comment", "推诿，属实")
    page.click("#review-form button[type=submit]")
    page.wait_for_load_state("load")
    page.locator("#manual-score", has_text="55.0").wait_for()
    page.reload()
    verdict = page.locator(f"#hit-{ordinal} td.verdict")
    assert "确认" in verdict.inner_text() and "李质检" in verdict.inner_text()
    assert "55.0" in page.inner_text("#manual-score")
    audit = page.inner_text("table.audit")
    assert "李质检" in audit and "推诿，属实" in audit
    screenshot(page, "qa_call")

    # The agent appeals; QA decides; both see the outcome.
    agent = page_as("agent")
    agent.goto("/console/qa/calls/QAT-001")
    assert agent.locator("#review-form input[type=radio]").count() == 0  # no verdicts for agents
    agent.fill("#appeal-reason", "第 2 轮之后我已帮客户登记报修，请复核")
    agent.click("#appeal-form button[type=submit]")
    agent.locator(".warn-box", has_text="等待质检员裁定").wait_for()
    assert "张丽" in agent.inner_text("table.appeal-list")
    agent.goto("/console/qa/appeals")
    assert "QAT-001" in agent.inner_text("table.appeals")

    page.reload()
    assert "申诉中" in page.inner_text("#call-status")
    page.select_option("#decision-outcome", "adjusted")
    page.fill("#decision-score", "70")
    page.fill("#decision-note", "已登记报修，酌情加分")
    page.click("#decision-form button[type=submit]")
    page.locator("ul.decisions", has_text="调整得分").wait_for()
    assert "70.0" in page.inner_text("ul.decisions") and "李质检" in page.inner_text("ul.decisions")
    agent.goto("/console/qa/calls/QAT-001")
    assert "调整得分" in agent.inner_text("ul.decisions") and "已裁定" in agent.inner_text("table.appeal-list")

    # Reports: per-agent table with a chart, and calibration with the verdict just given.
    page.goto("/console/qa/reports")
    assert page.locator("#agent-chart svg rect").count() >= 3
    agents = page.inner_text("table.agents")
    assert "A201" in agents and "A202" in agents
    assert page.locator("#precision-chart svg").count() == 1
    assert "taboo_serious" in page.inner_text("table.calibration")
    assert page.locator("#scatter-chart svg circle").count() >= 1
    screenshot(page, "qa_reports")

    # The agent may not upload.
    response = agent.goto("/console/qa/upload")
    assert response.status == 403 and "无权" in agent.inner_text("main")


def test_http_refusals_and_clear_errors(console_url: str, upload_file: Path) -> None:
    with _client(console_url, "agent") as agent, _client(console_url, "qa") as qa, \
            _client(console_url, "trainer") as trainer:  # fmt: skip
        r = agent.post("/console/qa/api/jobs", files={"file": ("a.jsonl", b"{}")})
        assert r.status_code == 403
        assert agent.get("/console/qa/").status_code == 403
        assert trainer.get("/console/qa/reports").status_code == 200  # trainers read reports …
        assert trainer.post("/console/qa/api/calls/X/review", json={"score": 50}).status_code == 403  # … not judge
        with httpx.Client(base_url=console_url, timeout=30) as anonymous:
            assert anonymous.get("/console/qa/api/jobs").status_code == 401
        r = qa.post("/console/qa/api/jobs", files={"file": ("calls.xlsx", b"PK..")})
        assert r.status_code == 422 and "不支持的文件类型" in r.json()["message"]
        r = qa.post("/console/qa/api/jobs", files={"file": ("empty.jsonl", b"")})
        assert r.status_code == 422 and "空" in r.json()["message"]
        r = qa.post("/console/qa/api/jobs", data={"scorecard": "home:../../etc/passwd"},
                    files={"file": ("a.jsonl", upload_file.read_bytes())})
        assert r.status_code == 422 and "没有评分表" in r.json()["message"]
        assert qa.get("/console/qa/api/jobs/J20990101-000000-abcdef").status_code == 404
        assert qa.get("/console/qa/jobs/..%2F..%2Fetc").status_code == 404

        # A CSV with a wrong header fails as a whole with the reason, never as "done".
        r = qa.post("/console/qa/api/jobs", files={"file": ("bad.csv", "编号,内容\n1,你好\n".encode())})
        assert r.status_code == 202
        job = _wait_done(qa, r.json()["id"])
        assert job["state"] == "failed" and "call_id" in job["message"] and "bad.csv" in job["message"]
        assert "/jobs/" not in job["message"]  # no server paths

        # CSV, one row per turn: scored and loaded like JSONL.
        csv_text = "call_id,agent_id,role,text\nQAT-C1,A209,坐席,您好，国家电网95598，工号3001为您服务。\n" \
                   "QAT-C1,A209,客户,我家停电了\nQAT-C1,A209,坐席,跟我说没用。\n"
        r = qa.post("/console/qa/api/jobs", files={"file": ("turns.csv", csv_text.encode())})
        job = _wait_done(qa, r.json()["id"])
        assert job["state"] == "done" and job["done"] == 1 and job["errors"] == 0
        rows = qa.get("/console/qa/api/results", params={"job": job["id"]}).json()["rows"]
        assert [r["call_id"] for r in rows] == ["QAT-C1"] and rows[0]["taboo"] >= 1
        assert qa.get(f"/console/qa/jobs/{job['id']}/download").text.count("\n") == 1

        r = qa.get("/console/qa/api/results", params={"risk_min": "abc"})
        assert r.status_code == 422 and "不是数字" in r.json()["message"]
        r = qa.post("/console/qa/api/calls/QAT-C1/review", json={"score": 120})
        assert r.status_code == 422 and "0–100" in r.json()["message"]
        r = qa.post("/console/qa/api/calls/QAT-C1/review", json={"verdicts": [{"hit": 99, "correct": True}]})
        assert r.status_code == 422 and "#99" in r.json()["message"]
        r = qa.post("/console/qa/api/calls/NO-SUCH-CALL/review", json={"score": 50})
        assert r.status_code == 404 and "NO-SUCH-CALL" in r.json()["message"]
        assert qa.get("/console/qa/calls/NO-SUCH-CALL").status_code == 404
        r = agent.post("/console/qa/api/calls/QAT-C1/appeals", json={"reason": "  "})
        assert r.status_code == 422 and "申诉理由" in r.json()["message"]
        r = qa.post("/console/qa/api/calls/QAT-C1/decision", json={"outcome": "adjusted"})
        assert r.status_code == 422 and "最终得分" in r.json()["message"]


def test_a_killed_job_is_interrupted_never_done_and_resumes_without_losing_a_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from qa_inspect.web import jobs

    n = 400
    lines = [_call(f"QAK-{i:04d}", f"A{300 + i % 5}", [OPEN, ("customer", f"我家停电了，第{i}次打电话"),
                                                        ("agent", "这个不归我们管。"), CLOSE]) for i in range(n)]
    lines[7] = "not json"
    src = tmp_path / "big.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    jobs_dir = tmp_path / "jobs"
    with open(src, "rb") as fh:
        job_id = jobs.create_job(jobs_dir, fh, "big.jsonl", review_db=tmp_path / "review.sqlite", created_by="李质检")
    path = jobs_dir / job_id
    monkeypatch.setenv(jobs.DELAY_ENV, "0.05")  # 16 calls per 50 ms: slow enough to kill it half-way
    jobs.start(path)
    deadline = time.monotonic() + 60
    while (status := jobs.read_status(path))["done"] < 40:
        assert status["active"] and time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["done"] < n
    os.kill(status["pid"], signal.SIGKILL)  # a crash: no chance to write a last status
    deadline = time.monotonic() + 10
    while (status := jobs.read_status(path))["state"] != "interrupted":
        assert time.monotonic() < deadline and status["state"] != "done", status
        time.sleep(0.1)
    assert not status["finished"] and not jobs.output_path(path).exists()
    monkeypatch.delenv(jobs.DELAY_ENV)
    jobs.resume(path)
    deadline = time.monotonic() + 120
    while (status := jobs.read_status(path))["active"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["state"] == "done" and status["done"] == n and status["errors"] == 1
    assert [e["line"] for e in status["error_lines"]] == [8]
    out = [json.loads(line) for line in jobs.output_path(path).read_text(encoding="utf-8").splitlines()]
    assert [o.get("call_id") for o in out] == [None if i == 7 else f"QAK-{i:04d}" for i in range(n)]
    assert "error" in out[7] and not jobs.partial_path(path).exists()
