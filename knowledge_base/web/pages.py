"""Routes of the 话术库 pages: script library, script page with history and diff, edit/new forms, approve and
retire, hit test, knowledge-gap clusters and the feedback report.

Reading needs ``kb:read``; editing, creating, approving and retiring need ``kb:write`` (the buttons are hidden
from other roles and the server refuses their POSTs with 403). The gap and feedback reports need
``feedback:report``. Every change is saved under the signed-in user's name as a new script version; the search
index is updated with it and the assist service reloads it at once (as POST /v1/kb/scripts does).
The knowledge base is opened per request in a worker thread (SQLite connections are per thread).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from kefu.io import KefuError
from kefu.web.auth import Principal, require
from kefu.web.console import NavItem, add_nav, add_static, add_templates, page_user, render
from knowledge_base.kb import KnowledgeBase, load_index_manager, render_version
from knowledge_base.schema import Script
from knowledge_base.store import StoreError
from knowledge_base.web.forms import (
    ACTION_NAMES,
    PAGE_SIZE,
    STATUS_NAMES,
    LibraryQuery,
    ScriptForm,
    category_counts,
    fmt_pct,
    fmt_serving,
    fmt_time,
    highlight,
    lint_for,
    localize_diff_line,
    search_match,
    sort_feedback,
    tag_counts,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
add_templates("kb", HERE / "templates")
add_static("kb", STATIC)
add_nav(NavItem("话术库", "/console/kb/", "kb:read", "kb",
                description="查找、编写、审核和停用场景话术；版本对比、命中测试、知识缺口与坐席反馈。"))
router = APIRouter(include_in_schema=False)

FIELD_NAMES = {"status": "状态", "scenario": "场景", "category": "分类", "questions": "问法", "script": "话术",
               "keywords": "关键词", "tags": "标签", "work_order": "工单类型", "time_limits": "承诺时限"}
MAX_QUERY = 500
HIT_K = 10
GAP_WINDOWS = {"7": "最近 7 天", "30": "最近 30 天", "90": "最近 90 天", "0": "全部"}
GAP_GRAINS = {"fine": (0.7, "细"), "normal": (0.8, "中"), "broad": (0.9, "粗")}
STATUS_ACTIONS = {"approve": "approved", "retire": "retired", "draft": "draft"}
HELPERS = {"fmt_time": fmt_time, "fmt_pct": fmt_pct, "fmt_serving": fmt_serving, "highlight": highlight,
           "status_names": STATUS_NAMES, "action_names": ACTION_NAMES, "field_names": FIELD_NAMES}


class KbOff(Exception):
    """The service has no usable knowledge base; the page says so instead of failing."""


# ---------------------------------------------------------------- helpers


def _kb_dir(request: Request) -> Path | None:
    value = getattr(request.app.state.settings, "kb_dir", None)
    return Path(value) if value is not None else None


def _open(kb_dir: Path | None) -> KnowledgeBase:
    if kb_dir is None:
        raise KbOff("服务启动时没有指定话术库目录（kefu serve --kb DIR）")
    try:
        return KnowledgeBase.open(kb_dir)
    except KefuError as exc:
        raise KbOff(f"无法打开话术库 {kb_dir}：{exc}") from None


def _page(request: Request, template: str, principal: Principal, title: str, tab: str, *,
          status_code: int = 200, **ctx: Any) -> HTMLResponse:
    return render(request, f"kb/{template}", principal, status_code=status_code, group="kb", title=title, tab=tab,
                  **HELPERS, **ctx)


def _off(request: Request, principal: Principal, message: str) -> HTMLResponse:
    return _page(request, "off.html", principal, "话术库", "", message=message, status_code=503)


def _missing(request: Request, principal: Principal, script_id: str) -> HTMLResponse:
    return _page(request, "missing.html", principal, "未找到话术", "library", script_id=script_id, status_code=404)


def _reload(request: Request) -> tuple[bool, str]:
    """Let the assist service pick up the new index right away (it also polls)."""
    reloader = getattr(request.app.state, "reloader", None)
    if reloader is None:
        return False, ""
    try:
        return reloader.check()
    except Exception as exc:  # the change is saved; the poller retries
        log.warning("reload after a knowledge-base change failed: %s", exc)
        return False, str(exc)


def _serving(request: Request) -> str | None:
    engine = getattr(request.app.state, "engine", None)
    return getattr(engine, "kb_version", None)


def _service_threshold(request: Request) -> float | None:
    engine = getattr(request.app.state, "engine", None)
    config = getattr(engine, "config", None)
    value = getattr(config, "min_score", None)
    return float(value) if isinstance(value, (int, float)) else None


def _done_url(script_id: str, done: str, *, index: Any = None, reloaded: bool = False, **extra: Any) -> str:
    params: dict[str, Any] = {"done": done, **extra}
    if index is not None and getattr(index, "state", "") == "failed":
        params["index"] = "failed"
    if reloaded:
        params["reloaded"] = "1"
    return f"/console/kb/scripts/{quote(script_id, safe='')}?{urlencode(params)}"


# Lint findings need every script (near-duplicates): computed once per knowledge-base version.
_lint_lock = threading.Lock()
_lint_cache: dict[str, tuple[int, list[Any]]] = {}


def _lint_issues(kb: KnowledgeBase) -> list[Any]:
    from knowledge_base.lint import lint_scripts

    key = str(kb.dir.resolve())
    version = kb.store.kb_version()
    with _lint_lock:
        cached = _lint_cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        issues = lint_scripts(kb.list(status=("draft", "approved")))
        _lint_cache[key] = (version, issues)
        return issues


# One index manager per knowledge base for the hit test and the gap page (kept current with refresh()).
_search_lock = threading.Lock()
_managers: dict[str, Any] = {}


class Searcher:
    """Searches the knowledge base's live index like `kefu kb search` (a stale index is repaired first)."""

    def __init__(self, kb_dir: Path) -> None:
        self.kb_dir = kb_dir

    def __enter__(self) -> Searcher:
        _search_lock.acquire()
        try:
            key = str(self.kb_dir.resolve())
            manager = _managers.get(key)
            if manager is None:
                manager = load_index_manager(self.kb_dir)
                if manager is None:
                    raise KbOff("没有安装检索组件（knowledge_base.index），无法测试命中")
                _managers[key] = manager
            if manager.exists():
                manager.refresh()  # another process (the CLI, a write of this service) changed the index
            try:
                with KnowledgeBase.open(self.kb_dir, index=manager) as kb:
                    self.retriever = kb.retriever()
            except KefuError as exc:
                raise KbOff(f"检索索引不可用：{exc}") from None
            threshold = getattr(getattr(self.retriever, "fusion", None), "threshold", None)
            self.threshold = float(threshold) if isinstance(threshold, (int, float)) else None
        except BaseException:
            _search_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        _search_lock.release()

    def search(self, text: str, k: int = HIT_K) -> list[Any]:
        return self.retriever.search(text, k, threshold=0.0)


def _hit_dict(hit: Any, threshold: float | None) -> dict[str, Any]:
    out = hit.to_dict()
    out["suggested"] = threshold is None or hit.score >= threshold
    return out


def _hit_test(kb_dir: Path | None, text: str, k: int = HIT_K) -> dict[str, Any]:
    if kb_dir is None:
        raise KbOff("服务启动时没有指定话术库目录（kefu serve --kb DIR）")
    with Searcher(kb_dir) as searcher:
        hits = searcher.search(text, k)
        threshold = searcher.threshold
    return {"text": text, "threshold": threshold, "hits": [_hit_dict(h, threshold) for h in hits]}


# ---------------------------------------------------------------- static asset




# ---------------------------------------------------------------- library


@router.get("/console/kb/", response_class=HTMLResponse)
async def library(request: Request, principal: Principal = Depends(page_user("kb:read"))) -> HTMLResponse:
    f = LibraryQuery.parse(dict(request.query_params))
    kb_dir = _kb_dir(request)

    def work() -> dict[str, Any]:
        with _open(kb_dir) as kb:
            everything = kb.list()
            status = kb.status()
            rows = []
            for s in everything:
                if f.status and s.status != f.status:
                    continue
                if f.category and s.category != f.category:
                    continue
                if f.tag and f.tag not in s.tags:
                    continue
                ok, matched = search_match(s, f.q)
                if ok:
                    rows.append({"s": s, "matched": matched})
            infos: dict[str, Any] = {}
            if f.sort == "updated":
                infos = {r["s"].id: kb.store.info(r["s"].id) for r in rows}
            key = {
                "id": lambda r: r["s"].id,
                "scenario": lambda r: r["s"].scenario,
                "category": lambda r: (r["s"].category, r["s"].id),
                "status": lambda r: (r["s"].status, r["s"].id),
                "version": lambda r: (r["s"].version, r["s"].id),
                "updated": lambda r: (infos[r["s"].id].updated_at if infos.get(r["s"].id) else "", r["s"].id),
            }[f.sort]
            rows.sort(key=key, reverse=f.dir == "desc")
            total = len(rows)
            pages = max(1, math.ceil(total / PAGE_SIZE))
            page = min(f.page, pages)
            shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
            for r in shown:
                r["info"] = infos.get(r["s"].id) or kb.store.info(r["s"].id)
            counts = {k: sum(1 for s in everything if s.status == k) for k in STATUS_NAMES}
        return {"rows": shown, "total": total, "page": page, "pages": pages, "categories": category_counts(everything),
                "tags": tag_counts(everything), "counts": counts, "all_count": len(everything), "kb_status": status}

    try:
        data = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    terms = f.q.split()
    return _page(request, "library.html", principal, "话术库", "library", f=f, terms=terms, serving=_serving(request),
                 **data)


# ---------------------------------------------------------------- one script: fields, lint, feedback, history, diff



def _diff_lines(text: str) -> list[tuple[str, str]]:
    """(css class, line) for a unified diff: add, del, hunk header or context."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            out.append(("head", line))
        elif line.startswith("@@"):
            out.append(("hunk", line))
        elif line.startswith("+"):
            out.append(("add", localize_diff_line(line)))
        elif line.startswith("-"):
            out.append(("del", localize_diff_line(line)))
        else:
            out.append(("ctx", localize_diff_line(line)))
    return out


def _int_param(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        return None


@router.get("/console/kb/scripts/{script_id}", response_class=HTMLResponse)
async def script_page(request: Request, script_id: str,
                      principal: Principal = Depends(page_user("kb:read"))) -> HTMLResponse:
    kb_dir = _kb_dir(request)
    params = request.query_params
    store = getattr(request.app.state, "feedback", None)

    def work() -> dict[str, Any] | None:
        with _open(kb_dir) as kb:
            script = kb.find(script_id)
            if script is None:
                return None
            info = kb.store.info(script_id)
            versions = kb.history(script_id)
            history = []
            previous = None
            for v in versions:
                history.append({"v": v, "changed": v.changed_fields(previous)})
                previous = v
            history.reverse()  # newest first
            last = versions[-1].version
            b = _int_param(params.get("b")) or last
            a = _int_param(params.get("a"))
            diff_error = ""
            if not 1 <= b <= last:
                diff_error, b = f"没有版本 v{b}（现有 v1–v{last}）", last
            if a is None:
                a = b - 1 if b > 1 else None
            elif not 1 <= a <= last:
                diff_error, a = f"没有版本 v{a}（现有 v1–v{last}）", (b - 1 if b > 1 else None)
            if a is not None and a > b:
                a, b = b, a
            if a is None or a == b:
                diff = [("ctx", localize_diff_line(line.rstrip("\n")))
                        for line in render_version(kb.version(script_id, b))]
                diff_title = f"v{b} 全文"
            else:
                diff = _diff_lines(kb.diff(script_id, a, b)) or [("ctx", "（两个版本内容相同）")]
                diff_title = f"v{a} → v{b}"
            try:
                lint = lint_for(_lint_issues(kb), script_id) if script.status != "retired" else []
            except Exception:  # a lint failure must not hide the script
                log.exception("lint failed for %s", script_id)
                lint = []
        feedback = None
        if store is not None:
            try:
                report = {r["script_id"]: r for r in store.report({script_id: script.scenario})}
                feedback = report.get(script_id)
            except Exception:
                log.exception("could not read feedback for %s", script_id)
        return {"s": script, "info": info, "history": history, "diff": diff, "diff_title": diff_title, "a": a,
                "b": b, "last": last, "diff_error": diff_error, "lint": lint, "feedback": feedback,
                "feedback_on": store is not None}

    try:
        data = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    if data is None:
        return _missing(request, principal, script_id)
    return _page(request, "script.html", principal, f"{script_id} {data['s'].scenario}", "library",
                 done=params.get("done", ""), done_version=params.get("v", ""),
                 index_failed=params.get("index") == "failed", reloaded=params.get("reloaded") == "1",
                 serving=_serving(request), **data)


# ---------------------------------------------------------------- edit


def _form_page(request: Request, principal: Principal, form: ScriptForm, *, script: Script | None,
               categories: list[tuple[str, int]], status_code: int = 200, conflict: dict[str, Any] | None = None,
               message: str = "", from_gap: str = "") -> HTMLResponse:
    new = script is None
    title = "新建话术" if new else f"修改 {script.id}"
    return _page(request, "edit.html", principal, title, "new" if new else "library", form=form, s=script, new=new,
                 categories=categories, conflict=conflict, message=message, from_gap=from_gap,
                 status_code=status_code)


@router.get("/console/kb/scripts/{script_id}/edit", response_class=HTMLResponse)
async def edit_page(request: Request, script_id: str,
                    principal: Principal = Depends(page_user("kb:write"))) -> HTMLResponse:
    kb_dir = _kb_dir(request)

    def work() -> tuple[Script | None, list[tuple[str, int]]]:
        with _open(kb_dir) as kb:
            return kb.find(script_id), category_counts(kb.list())

    try:
        script, categories = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    if script is None:
        return _missing(request, principal, script_id)
    return _form_page(request, principal, ScriptForm.from_script(script), script=script, categories=categories)


@router.post("/console/kb/scripts/{script_id}/edit", response_class=HTMLResponse)
async def edit_save(request: Request, script_id: str,
                    principal: Principal = Depends(page_user("kb:write"))) -> Response:
    kb_dir = _kb_dir(request)
    raw = await request.form()
    form = ScriptForm.from_form({k: raw.get(k) for k in raw})
    form.id = script_id
    as_draft = raw.get("as_draft") in ("1", "on")

    def work() -> dict[str, Any]:
        with _open(kb_dir) as kb:
            current = kb.find(script_id)
            categories = category_counts(kb.list())
            if current is None:
                return {"missing": True}
            out: dict[str, Any] = {"current": current, "categories": categories}
            if not form.validate(new=False):
                return out
            if form.base_version is not None and form.base_version != current.version:
                info = kb.store.info(script_id)
                out["conflict"] = {
                    "base": form.base_version, "current": current.version,
                    "by": info.updated_by if info else "", "at": fmt_time(info.updated_at) if info else "",
                    "diff": _diff_lines(kb.diff(script_id, form.base_version, current.version))
                    if 1 <= form.base_version < current.version else [],
                }
                form.base_version = current.version  # saving again overwrites, knowingly
                return out
            try:
                updated = kb.edit(script_id, form.changes(current), status="draft" if as_draft else None,
                                  author=principal.name, note=form.note.strip())
            except KefuError as exc:
                out["message"] = f"保存失败：{exc}"
                return out
            out["updated"] = updated
            out["index"] = kb.last_index
        out["reload"] = _reload(request) if updated is not None else (False, "")
        return out

    try:
        result = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    if result.get("missing"):
        return _missing(request, principal, script_id)
    current = result["current"]
    if form.errors or "conflict" in result or "message" in result:
        code = 409 if "conflict" in result else 422
        return _form_page(request, principal, form, script=current, categories=result["categories"],
                          status_code=code, conflict=result.get("conflict"), message=result.get("message", ""))
    updated = result["updated"]
    if updated is None:
        return RedirectResponse(_done_url(script_id, "nochange"), status_code=303)
    return RedirectResponse(_done_url(script_id, "saved", index=result["index"], reloaded=result["reload"][0],
                                      v=updated.version), status_code=303)


# ---------------------------------------------------------------- approve / retire / back to draft


@router.post("/console/kb/scripts/{script_id}/status", response_class=HTMLResponse)
async def change_status(request: Request, script_id: str,
                        principal: Principal = Depends(page_user("kb:write"))) -> Response:
    kb_dir = _kb_dir(request)
    raw = await request.form()
    action = str(raw.get("action") or "")
    note = str(raw.get("note") or "").strip()[:500]
    if action not in STATUS_ACTIONS:
        return RedirectResponse(_done_url(script_id, "badaction"), status_code=303)

    def work() -> dict[str, Any]:
        with _open(kb_dir) as kb:
            if kb.find(script_id) is None:
                return {"missing": True}
            changes = kb.set_status([script_id], STATUS_ACTIONS[action], author=principal.name, note=note)
            index = kb.last_index
        reload = _reload(request) if changes else (False, "")
        return {"changes": changes, "index": index, "reload": reload}

    try:
        result = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    if result.get("missing"):
        return _missing(request, principal, script_id)
    if not result["changes"]:
        return RedirectResponse(_done_url(script_id, "same"), status_code=303)
    change = result["changes"][0]
    return RedirectResponse(_done_url(script_id, action, index=result["index"], reloaded=result["reload"][0],
                                      v=change.new_version), status_code=303)


# ---------------------------------------------------------------- new script


@router.get("/console/kb/new", response_class=HTMLResponse)
async def new_page(request: Request, principal: Principal = Depends(page_user("kb:write"))) -> HTMLResponse:
    kb_dir = _kb_dir(request)
    params = request.query_params
    questions = [q for v in params.getlist("questions") for q in v.split("\n") if q.strip()]
    form = ScriptForm(scenario=params.get("scenario", "")[:200], category=params.get("category", "")[:100],
                      questions="\n".join(dict.fromkeys(q.strip()[:300] for q in questions[:50])),
                      note=params.get("note", "")[:500])

    def work() -> list[tuple[str, int]]:
        with _open(kb_dir) as kb:
            return category_counts(kb.list())

    try:
        categories = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    return _form_page(request, principal, form, script=None, categories=categories,
                      from_gap=params.get("from_gap", "")[:20])


@router.post("/console/kb/new", response_class=HTMLResponse)
async def new_save(request: Request, principal: Principal = Depends(page_user("kb:write"))) -> Response:
    from knowledge_base.cli import _next_id
    from knowledge_base.store.base import script_from_content

    kb_dir = _kb_dir(request)
    raw = await request.form()
    form = ScriptForm.from_form({k: raw.get(k) for k in raw})

    def work() -> dict[str, Any]:
        with _open(kb_dir) as kb:
            ids = kb.store.ids()
            out: dict[str, Any] = {"categories": category_counts(kb.list())}
            if not form.validate(new=True, existing_ids=ids):
                return out
            script_id = form.id or _next_id(ids)
            content = {"id": script_id, **{k: v for k, v in form.changes(None).items() if v is not None}}
            try:
                created = kb.add(script_from_content(content, "draft", 1), approve=form.approve,
                                 author=principal.name, note=form.note.strip())
            except StoreError as exc:  # the id was taken in the meantime
                form.errors["id"] = f"编号 {script_id} 已被占用，请换一个，或留空自动编号"
                log.info("new script refused: %s", exc)
                return out
            except KefuError as exc:
                out["message"] = f"保存失败：{exc}"
                return out
            out["created"] = created
            out["index"] = kb.last_index
        out["reload"] = _reload(request) if form.approve else (False, "")
        return out

    try:
        result = await run_in_threadpool(work)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    if "created" not in result:
        return _form_page(request, principal, form, script=None, categories=result["categories"], status_code=422,
                          message=result.get("message", ""), from_gap=str(raw.get("from_gap") or "")[:20])
    created = result["created"]
    return RedirectResponse(_done_url(created.id, "created", index=result["index"], reloaded=result["reload"][0]),
                            status_code=303)


# ---------------------------------------------------------------- hit test


@router.get("/console/kb/hit-test", response_class=HTMLResponse)
async def hit_test_page(request: Request, q: str = "",
                        principal: Principal = Depends(page_user("kb:read"))) -> HTMLResponse:
    text = q.strip()
    error = ""
    result: dict[str, Any] | None = None
    if len(text) > MAX_QUERY:
        error = f"问题最多 {MAX_QUERY} 个字，现在 {len(text)} 个"
    elif text:
        try:
            result = await run_in_threadpool(_hit_test, _kb_dir(request), text)
        except KbOff as exc:
            error = str(exc)
    return _page(request, "hit_test.html", principal, "命中测试", "hit", q=q, result=result, error=error,
                 service_threshold=_service_threshold(request), serving=_serving(request))


@router.get("/console/kb/api/hit-test")
async def hit_test_api(request: Request, q: str = "", k: int = HIT_K,
                       _: Principal = Depends(require("kb:read"))) -> JSONResponse:
    text = q.strip()
    if not text:
        return JSONResponse({"error": "invalid request", "message": "请输入客户问题（q）"}, status_code=422)
    if len(text) > MAX_QUERY:
        return JSONResponse({"error": "invalid request", "message": f"问题最多 {MAX_QUERY} 个字"}, status_code=422)
    if not 1 <= k <= 50:
        return JSONResponse({"error": "invalid request", "message": "k 应在 1–50 之间"}, status_code=422)
    try:
        result = await run_in_threadpool(_hit_test, _kb_dir(request), text, k)
    except KbOff as exc:
        return JSONResponse({"error": "unavailable", "message": str(exc)}, status_code=503)
    result["service_threshold"] = _service_threshold(request)
    return JSONResponse(result)


# ---------------------------------------------------------------- knowledge gaps


def _gap_params(params: Any) -> dict[str, Any]:
    days = params.get("days", "30")
    grain = params.get("grain", "normal")
    show_covered = params.get("covered") == "1"
    raw_min = params.get("min_count", "1")
    problems = []
    if days not in GAP_WINDOWS:
        problems.append(f"时间范围「{days}」无效，已用最近 30 天")
        days = "30"
    if grain not in GAP_GRAINS:
        problems.append(f"聚类粒度「{grain}」无效，已用“中”")
        grain = "normal"
    try:
        min_count = max(1, min(1000, int(raw_min)))
    except ValueError:
        problems.append(f"最少次数应为正整数，收到「{raw_min}」，已用 1")
        min_count = 1
    return {"days": days, "grain": grain, "min_count": min_count, "show_covered": show_covered,
            "problems": problems}


def _gaps(kb_dir: Path | None, p: dict[str, Any]) -> dict[str, Any]:
    from knowledge_base.gaps import GAP_LOG, cluster_gaps, read_gap_texts

    if kb_dir is None:
        raise KbOff("服务启动时没有指定话术库目录（kefu serve --kb DIR）")
    path = kb_dir / GAP_LOG
    out: dict[str, Any] = {"path": str(path), "clusters": [], "covered": [], "texts": 0}
    if not path.exists():
        return out
    since = None
    if p["days"] != "0":
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=int(p["days"]))
        since = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    texts = read_gap_texts(path, since=since)
    out["texts"] = len(texts)
    if not texts:
        return out
    clusters = cluster_gaps(texts, threshold=GAP_GRAINS[p["grain"]][0], min_count=p["min_count"], max_examples=5)
    rows = []
    try:
        with Searcher(kb_dir) as searcher:
            threshold = searcher.threshold
            for c in clusters[:200]:
                hits = searcher.search(c.label, 1)
                best = hits[0] if hits else None
                rows.append({"c": c, "best": best,
                             "covered": bool(best and threshold is not None and best.score >= threshold)})
    except KbOff:  # no index: the clusters are still worth seeing
        rows = [{"c": c, "best": None, "covered": False} for c in clusters[:200]]
    out["clusters"] = [r for r in rows if p["show_covered"] or not r["covered"]]
    out["covered"] = [r for r in rows if r["covered"]]
    return out


def _new_link(cluster: Any) -> str:
    params = [("questions", e) for e in cluster.examples]
    params.append(("note", f"来自知识缺口：{cluster.label}（{cluster.count} 次）"))
    params.append(("from_gap", str(cluster.count)))
    return "/console/kb/new?" + urlencode(params)


@router.get("/console/kb/gaps", response_class=HTMLResponse)
async def gaps_page(request: Request, principal: Principal = Depends(page_user("feedback:report"))) -> HTMLResponse:
    p = _gap_params(request.query_params)
    try:
        data = await run_in_threadpool(_gaps, _kb_dir(request), p)
    except KbOff as exc:
        return _off(request, principal, str(exc))
    return _page(request, "gaps.html", principal, "知识缺口", "gaps", p=p, windows=GAP_WINDOWS, grains=GAP_GRAINS,
                 new_link=_new_link, **data)


def _nearest(hit: Any) -> dict[str, Any] | None:
    return None if hit is None else {"id": hit.id, "scenario": hit.scenario, "score": round(hit.score, 4)}


@router.get("/console/kb/api/gaps")
async def gaps_api(request: Request, _: Principal = Depends(require("feedback:report"))) -> JSONResponse:
    p = _gap_params(request.query_params)
    try:
        data = await run_in_threadpool(_gaps, _kb_dir(request), p)
    except KbOff as exc:
        return JSONResponse({"error": "unavailable", "message": str(exc)}, status_code=503)
    return JSONResponse({
        "texts": data["texts"], "problems": p["problems"],
        "clusters": [{**r["c"].to_dict(), "covered": r["covered"], "nearest": _nearest(r["best"])}
                     for r in data["clusters"]],
        "covered_hidden": 0 if p["show_covered"] else len(data["covered"]),
    })


# ---------------------------------------------------------------- feedback report


@router.get("/console/kb/feedback", response_class=HTMLResponse)
async def feedback_page(request: Request,
                        principal: Principal = Depends(page_user("feedback:report"))) -> HTMLResponse:
    store = getattr(request.app.state, "feedback", None)
    params = request.query_params
    sort = params.get("sort", "shown")
    direction = "asc" if params.get("dir") == "asc" else "desc"
    q = params.get("q", "").strip()[:100]
    if store is None:
        return _off(request, principal, "服务没有配置反馈数据库，无法统计坐席反馈")
    kb_dir = _kb_dir(request)

    def work() -> dict[str, Any]:
        scripts: dict[str, Script] = {}
        try:
            with _open(kb_dir) as kb:
                scripts = {s.id: s for s in kb.list()}
        except KbOff:
            pass
        rows = store.report({sid: s.scenario for sid, s in scripts.items()})
        for r in rows:
            s = scripts.get(r["script_id"])
            r["status"] = s.status if s else ""
        if q:
            rows = [r for r in rows if q.lower() in f"{r['script_id']} {r['scenario']}".lower()]
        totals = {k: sum(r[k] for r in rows) for k in ("shown", "accepted", "dismissed", "used")}
        return {"rows": sort_feedback(rows, sort, direction), "totals": totals}

    data = await run_in_threadpool(work)
    return _page(request, "feedback.html", principal, "坐席反馈", "feedback", sort=sort, dir=direction, q=q,
                 policy=store.policy, **data)
