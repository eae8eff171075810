"""The 话术库 pages in the browser and over HTTP: library with search and filters, a script's page with history and
diff, editing with validation, approve and retire, the hit test, knowledge gaps, feedback per script, and the
refusals a read-only role gets."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.web.conftest import KEYS, screenshot

pytestmark = pytest.mark.browser

# Scripts of these tests only (other web tests share the server): ids K91xx, texts no other test uses.
NEW_ID = "K9101"
FEEDBACK_ID = "K9102"
FEEDBACK_QUESTION = "测试专用 月球基地的充能舱怎么申请接入"


def _client(console_url: str, role: str) -> httpx.Client:
    c = httpx.Client(base_url=console_url, timeout=30, follow_redirects=False)
    c.cookies.set("kefu_key", KEYS[role][0])
    return c


def _poll(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


# ---------------------------------------------------------------- browser: the trainer's main flow


def test_library_filters_by_category_and_search_text(page_as) -> None:
    page = page_as("trainer")
    page.goto("/console/kb/")
    assert page.locator("table.kb-library tbody tr").count() == 50  # first page of 166
    assert "第 1 / 4 页" in page.inner_text(".results-count")
    # Choosing a category applies it at once; the search text narrows it further.
    with page.expect_navigation():
        page.select_option("#f-category", "电费电价")
    rows = page.locator("table.kb-library tbody tr")
    assert rows.count() == 17
    assert set(page.locator("table.kb-library tbody td:nth-child(3)").all_inner_texts()) == {"电费电价"}
    page.fill("#f-q", "电费")
    page.click("#kb-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*q=%E7%94%B5%E8%B4%B9.*"))
    ids = page.locator("table.kb-library tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert "K0038" in ids and 0 < len(ids) < 17
    assert page.locator("table.kb-library mark").count() > 0  # the search words are highlighted
    # Tag and status filters are in the query string too (bookmarkable), and bad values say so.
    page.goto("/console/kb/?tag=紧急&status=approved")
    assert page.locator("table.kb-library tbody tr").count() == 10
    page.goto("/console/kb/?status=bogus")
    assert "筛选条件有误" in page.inner_text(".filters")
    page.goto("/console/kb/?category=电费电价&q=电费")
    screenshot(page, "kb_library")
    page.click("table.kb-library a:text('K0038')")
    page.wait_for_url("**/console/kb/scripts/K0038")
    assert "电费突然增高" in page.inner_text("h1")
    assert "这个月电费怎么这么多" in page.inner_text(".kb-questions")


def test_trainer_creates_edits_approves_and_retires_a_script(page_as) -> None:
    page = page_as("trainer")
    page.on("dialog", lambda dialog: dialog.accept())  # the retire confirmation
    page.goto("/console/kb/new")
    page.fill("#f-id", NEW_ID)
    page.fill("#f-scenario", "测试专用 海岛渔排临时用电")
    page.fill("#f-category", "业扩报装")
    page.fill("#f-questions", "渔排上想临时拉根电线怎么办\n海上养殖排要用电找谁申请\n渔排临时用电要多久能通")
    page.fill("#f-script", "您好，渔排临时用电请携带身份证到属地供电营业厅申请。")
    page.fill("#f-tags", "测试")
    page.fill("#f-note", "新场景")
    page.click("#save-button")
    page.wait_for_url(f"**/console/kb/scripts/{NEW_ID}?*")
    assert "已新建话术" in page.inner_text(".kb-flash")
    assert page.inner_text(".kb-head .kb-status") == "草稿"
    assert page.locator("#edit-button").is_visible()

    # A bad edit: the script text emptied and a question added. Nothing is saved, nothing typed is lost.
    page.click("#edit-button")
    page.wait_for_url(f"**/console/kb/scripts/{NEW_ID}/edit")
    questions = ["渔排上想临时拉根电线怎么办", "海上养殖排要用电找谁申请", "渔排临时用电要多久能通",
                 "渔排晚上能不能用电"]
    page.fill("#f-questions", "\n".join(questions))
    page.fill("#f-script", "   ")
    page.click("#save-button")
    page.wait_for_load_state()
    assert "请填写标准话术" in page.inner_text("#err-script")
    assert "渔排晚上能不能用电" in page.input_value("#f-questions")
    assert page.input_value("#f-scenario") == "测试专用 海岛渔排临时用电"
    # Fixed and saved: version 2, by the trainer, and the diff shows the changed line.
    page.fill("#f-script", "您好，渔排临时用电请携带身份证和养殖证明到属地供电营业厅申请，3个工作日内答复。")
    page.fill("#f-note", "补充所需材料")
    page.click("#save-button")
    page.wait_for_url(f"**/console/kb/scripts/{NEW_ID}?*")
    assert "已保存为 v2" in page.inner_text(".kb-flash")
    assert page.inner_text("#current-version") == "v2"
    top = page.locator(".kb-history tbody tr").first
    assert top.get_attribute("data-version") == "2"
    assert "王培训" in top.inner_text() and "补充所需材料" in top.inner_text()
    assert page.inner_text("#diff-title") == "v1 → v2"
    added = page.locator("pre.diff .add").all_inner_texts()
    removed = page.locator("pre.diff .del").all_inner_texts()
    assert any("养殖证明" in line for line in added)
    assert any("携带身份证到属地" in line for line in removed)
    assert any("渔排晚上能不能用电" in line for line in added)
    screenshot(page, "kb_script")

    # Approve with a note, then retire: the status follows and the history records who and why.
    page.fill("#status-note", "内容已核对")
    page.click("#approve-button")
    page.wait_for_url(f"**/console/kb/scripts/{NEW_ID}?*")
    assert page.inner_text(".kb-head .kb-status") == "已批准"
    assert "坐席端从现在起会推荐此话术" in page.inner_text(".kb-flash")
    assert "内容已核对" in page.locator(".kb-history tbody tr").first.inner_text()
    page.click("#retire-button")
    page.wait_for_url(f"**/console/kb/scripts/{NEW_ID}?*")
    assert page.inner_text(".kb-head .kb-status") == "已停用"
    assert page.locator(".kb-history tbody tr").count() == 4
    # Comparing any two versions: v1 against v4 shows the status change.
    page.check(".kb-history tr[data-version='1'] input[name=a]")
    page.check(".kb-history tr[data-version='4'] input[name=b]")
    page.click("#compare-button")
    page.wait_for_url(re.compile(r".*[?&](a=1&b=4|b=4&a=1).*"))
    assert page.inner_text("#diff-title") == "v1 → v4"
    assert "+状态: 已停用" in page.locator("pre.diff .add").all_inner_texts()
    page.goto(f"/console/kb/?q={NEW_ID}&status=retired")
    assert page.locator(f"tr[data-id='{NEW_ID}'] .kb-status").inner_text() == "已停用"


def test_read_only_roles_see_no_edit_buttons_and_are_refused(page_as, console_url: str) -> None:
    page = page_as("agent")
    page.goto("/console/kb/scripts/K0005")
    assert page.locator(".kb-questions li").count() > 0
    for selector in ("#edit-button", "#approve-button", "#retire-button", "#draft-button", ".kb-status-form"):
        assert page.locator(selector).count() == 0
    assert page.locator(".subnav a", has_text="新建话术").count() == 0
    assert page.locator(".subnav a", has_text="坐席反馈").count() == 0
    response = page.goto("/console/kb/scripts/K0005/edit")
    assert response.status == 403 and "无权" in page.inner_text("main")
    with _client(console_url, "agent") as c:
        before = c.get("/console/kb/scripts/K0005").text.count('data-version="')
        form = {"scenario": "x", "category": "x", "questions": "x", "script": "x", "base_version": "1"}
        assert c.post("/console/kb/scripts/K0005/edit", data=form).status_code == 403
        assert c.post("/console/kb/scripts/K0005/status", data={"action": "retire"}).status_code == 403
        assert c.post("/console/kb/new", data={**form, "id": "K9199"}).status_code == 403
        assert c.get("/console/kb/gaps").status_code == 403
        assert c.get("/console/kb/api/gaps").status_code == 403
        assert c.get("/console/kb/scripts/K0005").text.count('data-version="') == before
        assert c.get("/console/kb/scripts/K9199").status_code == 404
        # Reading and the hit test are open to agents.
        r = c.get("/console/kb/hit-test", params={"q": "这个月电费怎么这么多"})
        assert r.status_code == 200 and 'data-id="K0038"' in r.text
    with httpx.Client(base_url=console_url, timeout=30) as anonymous:
        assert anonymous.get("/console/kb/api/hit-test", params={"q": "停电"}).status_code == 401


def test_hit_test_ranks_k0038_first_with_score_and_matched_terms(page_as) -> None:
    page = page_as("trainer")
    page.goto("/console/kb/hit-test")
    page.fill("#q", "这个月电费怎么这么多")
    page.click("#hit-button")
    page.wait_for_url("**/console/kb/hit-test?q=*")
    first = page.locator("table.kb-hits tbody tr").first
    assert first.get_attribute("data-id") == "K0038"
    assert first.get_attribute("class") == "suggested"
    score = float(first.locator("td.score strong").inner_text())
    assert 0.2 <= score <= 1.0
    assert "电费" in first.locator("td.terms").inner_text()
    assert first.locator("td.matched mark").count() > 0
    threshold = page.inner_text("#threshold")
    assert "推荐阈值" in threshold and re.search(r"0\.\d\d", threshold)
    # Lower-ranked scripts below the threshold are shown, marked as not suggested.
    assert page.locator("table.kb-hits tr.below").count() >= 1
    assert "低于推荐阈值" in page.inner_text("table.kb-hits tr.threshold-row")
    screenshot(page, "kb_hit_test")
    page.goto("/console/kb/hit-test?q=" + "长" * 600)
    assert "最多 500 个字" in page.inner_text(".error-box")


def test_hit_test_api(console_url: str) -> None:
    with _client(console_url, "qa") as c:
        r = c.get("/console/kb/api/hit-test", params={"q": "这个月电费怎么这么多", "k": 3})
        assert r.status_code == 200
        body = r.json()
        assert body["hits"][0]["id"] == "K0038" and body["hits"][0]["suggested"] is True
        assert len(body["hits"]) <= 3 and 0 < body["threshold"] < 1
        assert "电费" in body["hits"][0]["matched_terms"]
        assert c.get("/console/kb/api/hit-test", params={"q": "  "}).json()["message"] == "请输入客户问题（q）"
        assert c.get("/console/kb/api/hit-test", params={"q": "电费", "k": 0}).status_code == 422


def test_gaps_page_clusters_unanswered_questions(page_as, console_url: str) -> None:
    questions = ["我家猫咪不吃猫粮怎么办", "家里猫咪突然不吃猫粮", "我的猫咪最近不吃猫粮", "猫咪不吃猫粮怎么办啊"]
    others = ["快递柜的取件码一直收不到", "取件码收不到怎么取快递"]  # a second, smaller topic
    call_id = f"KBGAP-{uuid.uuid4().hex[:8]}"
    with _client(console_url, "agent") as c:
        for text in questions + others:
            r = c.post(f"/v1/calls/{call_id}/turns", json={"role": "customer", "text": text})
            assert r.status_code == 200 and r.json()["gap"] is True
    with _client(console_url, "trainer") as c:
        def cat_cluster():
            clusters = c.get("/console/kb/api/gaps", params={"days": "0"}).json()["clusters"]
            return next((cl for cl in clusters if any("猫粮" in e for e in cl["examples"])), None)

        cluster = _poll(cat_cluster)
        assert cluster is not None and cluster["count"] >= 4 and call_id in cluster["call_ids"]
        assert c.get("/console/kb/api/gaps", params={"days": "x"}).json()["problems"]
    page = page_as("trainer")
    page.goto("/console/kb/gaps")
    card = page.locator(".kb-gap", has_text="猫粮").first
    assert int(card.locator(".kb-count").inner_text()) >= 4
    assert card.locator(".kb-examples li").count() >= 2
    screenshot(page, "kb_gaps")
    # "新建话术" opens the new-script form with the customers' wordings filled in.
    card.locator("a.new-from-gap").click()
    page.wait_for_url("**/console/kb/new?*")
    typed = page.input_value("#f-questions")
    assert sum(q in typed for q in questions) >= 2
    assert "来自知识缺口" in page.input_value("#f-note")


def test_feedback_page_shows_a_scripts_counts(page_as, console_url: str) -> None:
    script = {"id": FEEDBACK_ID, "scenario": "测试专用 月球基地充能舱接入", "category": "咨询其他",
              "questions": [FEEDBACK_QUESTION, "月球基地充能舱接入找谁办理", "测试专用 充能舱接入申请流程"],
              "script": "您好，这是测试专用话术。", "tags": ["测试"]}
    with _client(console_url, "trainer") as c:
        r = c.post("/v1/kb/scripts", json={"scripts": [script], "approve": True})
        assert r.status_code == 200, r.text
    # Two calls see the script: the first agent accepts and uses it, the second dismisses it.
    with _client(console_url, "agent") as c:
        for actions in (("accepted", "used"), ("dismissed",)):
            call_id = f"KBFB-{uuid.uuid4().hex[:8]}"
            reply = c.post(f"/v1/calls/{call_id}/turns", json={"role": "customer", "text": FEEDBACK_QUESTION}).json()
            assert FEEDBACK_ID in [s["id"] for s in reply["suggestions"]]
            for action in actions:
                r = c.post(f"/v1/calls/{call_id}/feedback", json={"script_id": FEEDBACK_ID, "action": action})
                assert r.status_code == 200
    page = page_as("trainer")

    def row_counts():
        page.goto("/console/kb/feedback?q=K9102")
        row = page.locator(f"tr[data-id='{FEEDBACK_ID}']")
        if row.count() == 0 or row.locator("td[data-k=dismissed]").inner_text() != "1":
            return None
        return {k: row.locator(f"td[data-k={k}]").inner_text() for k in ("shown", "accepted", "used", "dismissed")}

    counts = _poll(row_counts)
    assert counts == {"shown": "2", "accepted": "1", "used": "1", "dismissed": "1"}
    row = page.locator(f"tr[data-id='{FEEDBACK_ID}']")
    assert row.locator("td[data-k=acceptance_rate]").inner_text().startswith("100.0%")
    assert row.locator("td[data-k=dismissal_rate]").inner_text().startswith("50.0%")
    # Sorting by a column is a link (server-side, in the query string).
    page.goto("/console/kb/feedback")
    page.click("a[data-sort=dismissed]")
    page.wait_for_url("**sort=dismissed*")
    assert page.locator("th[aria-sort=descending] a[data-sort=dismissed]").count() == 1
    screenshot(page, "kb_feedback")
    # The script's own page shows the same numbers.
    page.goto(f"/console/kb/scripts/{FEEDBACK_ID}")
    assert page.inner_text(".kb-feedback strong[data-k=accepted]") == "1"
    assert page.inner_text(".kb-feedback strong[data-k=dismissed]") == "1"


# ---------------------------------------------------------------- HTTP: edge cases of the forms


def test_edit_conflict_and_bad_input_keep_the_users_text(console_url: str) -> None:
    script = {"id": "K9103", "scenario": "测试专用 冲突检测", "category": "咨询其他",
              "questions": ["测试专用问法甲", "测试专用问法乙", "测试专用问法丙"], "script": "测试专用话术。"}
    with _client(console_url, "trainer") as c:
        assert c.post("/v1/kb/scripts", json={"scripts": [script], "approve": False}).status_code == 200
        form = {"scenario": "测试专用 冲突检测", "category": "咨询其他", "script": "新的话术。", "base_version": "1",
                "questions": "测试专用问法甲\n测试专用问法乙\n测试专用问法甲"}
        r = c.post("/console/kb/scripts/K9103/edit", data=form)
        assert r.status_code == 422 and "第 3 行与第 1 行重复" in r.text and "新的话术。" in r.text
        # Someone else saves first: the second save is stopped with their change shown, nothing lost.
        form["questions"] = "测试专用问法甲\n测试专用问法乙"
        assert c.post("/console/kb/scripts/K9103/edit", data={**form, "script": "别人的修改。"}).status_code == 303
        r = c.post("/console/kb/scripts/K9103/edit", data={**form, "script": "我的修改。"})
        assert r.status_code == 409 and "已被修改" in r.text and "我的修改。" in r.text and "别人的修改。" in r.text
        assert 'name="base_version" value="2"' in r.text
        r = c.post("/console/kb/scripts/K9103/edit", data={**form, "script": "我的修改。", "base_version": "2"})
        assert r.status_code == 303 and "done=saved" in r.headers["location"]
        # The same content again makes no new version; an unknown action changes nothing.
        r = c.post("/console/kb/scripts/K9103/edit", data={**form, "script": "我的修改。", "base_version": "3"})
        assert "done=nochange" in r.headers["location"]
        assert "done=badaction" in c.post("/console/kb/scripts/K9103/status", data={"action": "x"}).headers["location"]
        # New scripts: a taken id and a missing category are reported in Chinese.
        r = c.post("/console/kb/new", data={**form, "id": "K0001", "category": ""})
        assert r.status_code == 422 and "编号 K0001 已被占用" in r.text and "请选择或填写分类" in r.text
        r = c.get("/console/kb/scripts/K9103?a=1&b=99")
        assert r.status_code == 200 and "没有版本 v99" in r.text


# ---------------------------------------------------------------- the form and display helpers, without a server


def test_script_form_validation_messages_and_changes() -> None:
    from knowledge_base.schema import Script
    from knowledge_base.web.forms import ScriptForm

    form = ScriptForm.from_form({"scenario": " ", "category": "", "questions": "甲\r\n\r\n乙|丙\r\n甲",
                                 "script": "x" * 4001, "keywords": "停电，报修、空开 停电", "tags": "",
                                 "base_version": "abc"})
    assert not form.validate(new=True, existing_ids={"K0001"})
    assert form.errors["scenario"] == "请填写场景名称" and form.errors["category"] == "请选择或填写分类"
    assert "第 3 行含有竖线" in form.errors["questions"] and "第 4 行与第 1 行重复" in form.errors["questions"]
    assert "最多 4000 个字" in form.errors["script"] and form.base_version is None
    assert ScriptForm.items(form.keywords) == ["停电", "报修", "空开"]
    form = ScriptForm(id="K0001", scenario="s", category="c", questions="q", script="t")
    assert not form.validate(new=True, existing_ids={"K0001"}) and "已被占用" in form.errors["id"]
    # Emptying an extra field removes it; fields the form does not know are kept by KnowledgeBase.edit.
    current = Script("K1", "s", ["q"], "t", category="c",
                     extra={"work_order": "咨询工单", "time_limits": ["5个工作日"]})
    form = ScriptForm.from_script(current)
    assert form.validate(new=False)
    form.work_order = ""
    changes = form.changes(current)
    assert changes["work_order"] is None and changes["time_limits"] == ["5个工作日"]


def test_diff_localisation_highlight_and_lint_messages() -> None:
    from knowledge_base.lint import LintIssue
    from knowledge_base.web.forms import highlight, lint_for, localize_diff_line

    assert localize_diff_line("+status: retired") == "+状态: 已停用"
    assert localize_diff_line(" script:") == " 话术:"
    assert localize_diff_line("+  - status: 不是字段") == "+  - status: 不是字段"
    assert str(highlight("<b>电费</b>怎么这么多", ["电费", "这么"])) == (
        "&lt;b&gt;<mark>电费</mark>&lt;/b&gt;怎么<mark>这么</mark>多")
    issue = LintIssue("near-duplicate", "warning", "K1", "…", other_id="K2",
                      details={"question": "甲问", "other_question": "乙问", "similarity": 0.91, "pairs": 1})
    [mine] = lint_for([issue], "K2")  # seen from the other script of the pair
    assert mine["other_id"] == "K1" and mine["message"].startswith("问法「乙问」与 K1 的「甲问」相似度 0.91")
