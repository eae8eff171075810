"""Routes of the 质检 pages: upload and score jobs, results table, call page with verdicts and appeals, reports.

Pages (HTML) and their JSON endpoints (under /console/qa/api/) share one router. Viewing needs
``qa:read``; uploading, verdicts, manual scores and appeal decisions need ``qa:write``; filing an
appeal needs ``qa:appeal`` (agents may open the call page to appeal without ``qa:read``). Every
write is recorded under the signed-in user's name. See docs/console.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from kefu.web.auth import Principal, check, key_from_request
from kefu.web.console import (
    NavItem,
    PageForbidden,
    SignInRequired,
    add_nav,
    add_static,
    add_templates,
    current_principal,
    page_user,
    render,
)
from qa_inspect.review.calibration import calibration
from qa_inspect.review.store import ReviewError
from qa_inspect.web import charts, jobs, queries

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
add_templates("qa", HERE / "templates")
add_static("qa", STATIC)
add_nav(NavItem("质检", "/console/qa/", "qa:read", "qa",
                description="上传通话转写批量评分，按得分、风险、坐席、规则筛选，复核、申诉与校准报表。"),
        NavItem("我的申诉", "/console/qa/appeals", "qa:appeal", "qa", unless="qa:read",
                description="查看自己通话的质检结果并对有异议的扣分提出申诉。"))  # agents have no QA menu
router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------- helpers


def _settings(request: Request) -> Any:
    return request.app.state.settings


def _review_db(request: Request) -> Path | None:
    return getattr(_settings(request), "review_db", None)


def _jobs_dir(request: Request) -> Path | None:
    return getattr(_settings(request), "jobs_dir", None)


def _err(status: int, message: str, error: str = "invalid request") -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "message": message})


def page_any(*permissions: str) -> Callable[[Request], Awaitable[Principal]]:
    """A page guard that lets in a role holding any of `permissions`."""

    async def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if not any(principal.can(p) for p in permissions):
            raise PageForbidden(principal, " 或 ".join(permissions))
        return principal

    return dependency


def require_any(*permissions: str) -> Callable[[Request], Awaitable[Principal]]:
    """The JSON-endpoint version of page_any: 401 without a key, 403 without any of the permissions."""

    async def dependency(request: Request) -> Principal:
        keys = request.app.state.keys
        key = key_from_request(request)
        last: Exception | None = None
        for p in permissions:
            try:
                return check(keys, key, p)
            except Exception as exc:  # HTTPException 401/403: try the next permission
                last = exc
        assert last is not None
        raise last

    return dependency


def fmt_time(value: Any) -> str:
    """A stored UTC timestamp in the server's local time, to the minute."""
    if not value:
        return ""
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone().strftime("%Y-%m-%d %H:%M")


def fmt_num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def risk_class(value: Any) -> str:
    if value is None:
        return ""
    return "risk-high" if value >= 0.8 else ("risk-mid" if value >= 0.5 else "risk-low")


HELPERS = {"fmt_time": fmt_time, "fmt_num": fmt_num, "fmt_pct": fmt_pct, "risk_class": risk_class}


def _page(request: Request, template: str, principal: Principal, title: str, tab: str, **ctx: Any) -> HTMLResponse:
    return render(request, f"qa/{template}", principal, group="qa", title=title, tab=tab, **HELPERS, **ctx)


def _off(request: Request, principal: Principal, what: str) -> HTMLResponse:
    return _page(request, "off.html", principal, "质检", "", what=what)


def scorecards(request: Request) -> list[dict[str, str]]:
    """Scorecards a job may use: the bundled ones and YAML files in $KEFU_HOME/qa/scorecards/."""
    from qa_inspect.lexicon import data_path

    found: list[dict[str, str]] = []
    folders = [("builtin", data_path("scorecards"))]
    jobs_dir = _jobs_dir(request)
    if jobs_dir is not None:
        folders.append(("home", Path(jobs_dir).parent / "scorecards"))
    for tag, folder in folders:
        if not Path(folder).is_dir():
            continue
        for p in sorted(Path(folder).glob("*.y*ml")):
            label = p.stem
            try:
                import yaml

                raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
                label = f"{raw.get('name') or p.stem} {raw.get('version') or ''}".strip()
            except Exception:  # listed by file name; the job reports why it does not load
                pass
            found.append({"id": f"{tag}:{p.name}", "label": label, "path": str(p), "default": p.name == "default.yaml"
                          and tag == "builtin"})  # fmt: skip
    return found


# ---------------------------------------------------------------- static asset




# ---------------------------------------------------------------- results (the QA home page)


@router.get("/console/qa/", response_class=HTMLResponse)
async def results_page(request: Request, principal: Principal = Depends(page_user("qa:read"))) -> HTMLResponse:
    db = _review_db(request)
    if db is None:
        return _off(request, principal, "复核库")
    f = queries.Filters.parse(dict(request.query_params))
    jobs_dir = _jobs_dir(request)

    def work() -> dict[str, Any]:
        with queries.open_store(db) as store:
            data = queries.results(store, f)
            data.update(queries.choices(store))
        data["job_list"] = jobs.list_jobs(jobs_dir, limit=30) if jobs_dir else []
        data["job_status"] = None
        if f.job and jobs_dir and jobs.valid_job_id(f.job) and (jobs_dir / f.job / "job.json").is_file():
            data["job_status"] = jobs.read_status(jobs_dir / f.job)
        return data

    data = await run_in_threadpool(work)
    names = queries.rule_names()
    return _page(request, "results.html", principal, "质检结果", "results", f=f, names=names,
                 rule_name=lambda r: queries.rule_name(r, names), statuses=queries.STATUS_NAMES,
                 page_sizes=queries.PAGE_SIZES, **data)  # fmt: skip


@router.get("/console/qa/api/results")
async def results_api(request: Request, principal: Principal = Depends(require_any("qa:read"))) -> Response:
    db = _review_db(request)
    if db is None:
        return _err(404, "服务未配置复核库（review_db），质检结果不可用", "not configured")
    f = queries.Filters.parse(dict(request.query_params))
    if f.problems:
        return _err(422, "；".join(f.problems))

    def work() -> dict[str, Any]:
        with queries.open_store(db) as store:
            return queries.results(store, f)

    return JSONResponse(await run_in_threadpool(work))


# ---------------------------------------------------------------- upload and jobs


@router.get("/console/qa/upload", response_class=HTMLResponse)
async def upload_page(request: Request, principal: Principal = Depends(page_user("qa:write"))) -> HTMLResponse:
    jobs_dir = _jobs_dir(request)
    if jobs_dir is None or _review_db(request) is None:
        return _off(request, principal, "评分任务目录")
    cards = await run_in_threadpool(scorecards, request)
    recent = await run_in_threadpool(jobs.list_jobs, jobs_dir, 15)
    scorer = "模型 + 规则" if _settings(request).model_dir else "仅规则（未加载分类模型：投诉风险与同理心为规则估计）"
    return _page(request, "upload.html", principal, "上传评分", "upload", scorecards=cards, jobs=recent,
                 scorer=scorer, max_mb=MAX_UPLOAD_BYTES // (1024 * 1024))  # fmt: skip


@router.get("/console/qa/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(job_id: str, request: Request, principal: Principal = Depends(page_user("qa:read"))) -> Response:
    jobs_dir = _jobs_dir(request)
    if jobs_dir is None:
        return _off(request, principal, "评分任务目录")
    try:
        status = await run_in_threadpool(lambda: jobs.read_status(jobs.job_dir(jobs_dir, job_id)))
    except jobs.JobError as exc:
        return _page(request, "missing.html", principal, "评分任务", "upload", message=str(exc), status_code=404)
    return _page(request, "job.html", principal, f"评分任务 {job_id}", "upload", job=status)


@router.get("/console/qa/jobs/{job_id}/download")
async def job_download(job_id: str, request: Request, principal: Principal = Depends(page_user("qa:read"))) -> Response:
    jobs_dir = _jobs_dir(request)
    try:
        path = jobs.job_dir(jobs_dir, job_id) if jobs_dir else None
    except jobs.JobError:
        path = None
    if path is None or not jobs.output_path(path).is_file():
        return _err(404, "该任务还没有评分结果文件", "not found")
    return FileResponse(jobs.output_path(path), media_type="application/x-ndjson", filename=f"{job_id}-scored.jsonl")


@router.post("/console/qa/api/jobs")
async def create_job_api(
    request: Request,
    file: UploadFile | None = File(None),
    scorecard: str = Form(""),
    principal: Principal = Depends(require_any("qa:write")),
) -> Response:
    jobs_dir, db = _jobs_dir(request), _review_db(request)
    if jobs_dir is None or db is None:
        return _err(404, "服务未配置评分任务目录或复核库，无法上传", "not configured")
    if file is None or not file.filename:
        return _err(422, "请选择要上传的通话文件")
    cards = await run_in_threadpool(scorecards, request)
    chosen = next((c for c in cards if c["id"] == scorecard), None) if scorecard else None
    if scorecard and chosen is None:
        return _err(422, f"没有评分表 {scorecard}")
    model_dir = _settings(request).model_dir

    def work() -> dict[str, Any]:
        job_id = jobs.create_job(
            Path(jobs_dir), file.file, file.filename or "", review_db=Path(db), created_by=principal.name,
            scorecard=None if chosen is None or chosen["default"] else chosen["path"],
            scorecard_label=chosen["label"] if chosen else "", model_dir=model_dir, max_bytes=MAX_UPLOAD_BYTES,
        )  # fmt: skip
        path = Path(jobs_dir) / job_id
        jobs.start(path)
        return jobs.read_status(path)

    try:
        status = await run_in_threadpool(work)
    except jobs.JobError as exc:
        return _err(422, str(exc))
    log.info("qa job %s: %s uploaded %s", status["id"], principal.name, status.get("filename"))
    return JSONResponse(status_code=202, content=status)


@router.get("/console/qa/api/jobs")
async def list_jobs_api(request: Request, principal: Principal = Depends(require_any("qa:read"))) -> Response:
    jobs_dir = _jobs_dir(request)
    return JSONResponse({"jobs": await run_in_threadpool(jobs.list_jobs, jobs_dir, 50) if jobs_dir else []})


@router.get("/console/qa/api/jobs/{job_id}")
async def job_api(job_id: str, request: Request, principal: Principal = Depends(require_any("qa:read"))) -> Response:
    jobs_dir = _jobs_dir(request)
    try:
        return JSONResponse(await run_in_threadpool(lambda: jobs.read_status(jobs.job_dir(jobs_dir, job_id))))
    except (jobs.JobError, TypeError):
        return _err(404, f"没有编号为 {job_id} 的评分任务", "not found")


@router.post("/console/qa/api/jobs/{job_id}/{action}")
async def job_action_api(
    job_id: str, action: str, request: Request, principal: Principal = Depends(require_any("qa:write"))
) -> Response:
    jobs_dir = _jobs_dir(request)
    if action not in ("cancel", "resume"):
        return _err(404, f"未知操作 {action}", "not found")
    try:
        path = jobs.job_dir(jobs_dir, job_id) if jobs_dir else None
        if path is None:
            raise jobs.JobError(f"没有编号为 {job_id} 的评分任务")
        fn = jobs.cancel if action == "cancel" else jobs.resume
        status = await run_in_threadpool(fn, path)
    except jobs.JobError as exc:
        return _err(409 if "没有编号" not in str(exc) else 404, str(exc))
    log.info("qa job %s: %s by %s", job_id, action, principal.name)
    return JSONResponse(status)


# ---------------------------------------------------------------- one call


@router.get("/console/qa/calls/{call_id}", response_class=HTMLResponse)
async def call_page(
    call_id: str, request: Request, raw: int = 0, principal: Principal = Depends(page_any("qa:read", "qa:appeal"))
) -> HTMLResponse:
    db = _review_db(request)
    if db is None:
        return _off(request, principal, "复核库")
    unmasked = bool(raw) and principal.can("qa:write")

    def work() -> dict[str, Any] | None:
        with queries.open_store(db) as store:
            try:
                return queries.call_view(store, call_id, mask=not unmasked)
            except ReviewError:
                return None

    call = await run_in_threadpool(work)
    if call is None:
        return _page(request, "missing.html", principal, "通话", "results", status_code=404,
                     message=f"复核库中没有通话 {call_id}。请检查通话编号，或先上传并评分该通话。")  # fmt: skip
    return _page(request, "call.html", principal, f"通话 {call_id}", "results", call=call,
                 can_write=principal.can("qa:write"), can_appeal=principal.can("qa:appeal"),
                 can_read=principal.can("qa:read"), outcomes=queries.OUTCOME_NAMES,
                 reason_name=queries.reason_name)  # fmt: skip


class VerdictIn(BaseModel):
    hit: int
    correct: bool
    note: str | None = None


class ReviewIn(BaseModel):
    verdicts: list[VerdictIn] = []
    score: float | None = None
    fatal: bool | None = None
    comment: str | None = None


class AppealIn(BaseModel):
    reason: str = ""


class DecisionIn(BaseModel):
    outcome: str = "upheld"
    final_score: float | None = None
    note: str | None = None


def _clean(text: str | None, limit: int = 2000) -> str | None:
    text = (text or "").strip()
    return text[:limit] or None


async def _store_action(request: Request, call_id: str, fn: Callable[[Any], Any]) -> Response:
    db = _review_db(request)
    if db is None:
        return _err(404, "服务未配置复核库（review_db）", "not configured")

    def work() -> Any:
        with queries.open_store(db) as store:
            store.call(call_id)  # unknown call: ReviewError before anything is written
            return fn(store)

    try:
        return JSONResponse(await run_in_threadpool(work))
    except ReviewError as exc:
        text = str(exc)
        if "is not in the review store" in text:
            return _err(404, f"复核库中没有通话 {call_id}", "not found")
        return _err(422, _zh(text))


def _zh(message: str) -> str:
    """Chinese for the review store's messages a page can trigger."""
    if "has no hit" in message:
        return "该通话没有这条命中（页面可能已过期，请刷新）：" + message
    return message


@router.get("/console/qa/api/calls/{call_id}")
async def call_api(
    call_id: str, request: Request, principal: Principal = Depends(require_any("qa:read", "qa:appeal"))
) -> Response:
    return await _store_action(request, call_id, lambda store: queries.call_view(store, call_id))


@router.post("/console/qa/api/calls/{call_id}/review")
async def review_api(
    call_id: str, body: ReviewIn, request: Request, principal: Principal = Depends(require_any("qa:write"))
) -> Response:
    if not body.verdicts and body.score is None and not _clean(body.comment):
        return _err(422, "没有要保存的内容：请对命中给出结论，或填写人工评分")
    if body.score is not None and not (math.isfinite(body.score) and 0 <= body.score <= 100):
        return _err(422, f"人工评分应在 0–100 之间，收到 {body.score:g}")
    if body.score is None and body.fatal is not None:
        return _err(422, "标记致命项时请同时填写人工评分")

    def act(store: Any) -> dict[str, Any]:
        ordinals = {h["ordinal"] for h in store.hits(call_id)}
        bad = [v.hit for v in body.verdicts if v.hit not in ordinals]
        if bad:
            raise ReviewError(f"该通话没有命中 #{bad[0]}（页面可能已过期，请刷新）")
        for v in body.verdicts:
            store.verdict(call_id, v.hit, v.correct, principal.name, _clean(v.note, 500))
        if body.score is not None:
            store.manual_score(call_id, body.score, principal.name, fatal=body.fatal, note=_clean(body.comment))
        elif _clean(body.comment):
            store._audit(principal.name, "comment", call_id, {"note": _clean(body.comment)})
            store.conn.commit()
        return {"call_id": call_id, "verdicts": len(body.verdicts), "score": body.score, "reviewer": principal.name}

    return await _store_action(request, call_id, act)


@router.post("/console/qa/api/calls/{call_id}/appeals")
async def appeal_api(
    call_id: str, body: AppealIn, request: Request, principal: Principal = Depends(require_any("qa:appeal"))
) -> Response:
    reason = _clean(body.reason)
    if not reason:
        return _err(422, "请填写申诉理由")

    def act(store: Any) -> dict[str, Any]:
        if store.conn.execute("SELECT 1 FROM appeals WHERE call_id=? AND status='open'", (call_id,)).fetchone():
            raise ReviewError("该通话已有一条待处理的申诉，请等待质检员裁定")
        appeal_id = store.appeal(call_id, reason, principal.name)
        return {"call_id": call_id, "appeal_id": appeal_id, "filed_by": principal.name}

    return await _store_action(request, call_id, act)


@router.post("/console/qa/api/calls/{call_id}/decision")
async def decision_api(
    call_id: str, body: DecisionIn, request: Request, principal: Principal = Depends(require_any("qa:write"))
) -> Response:
    if body.outcome not in queries.OUTCOME_NAMES:
        return _err(422, "裁定结果应为：维持原判、撤销扣分或调整得分")
    if body.final_score is not None and not (math.isfinite(body.final_score) and 0 <= body.final_score <= 100):
        return _err(422, f"最终得分应在 0–100 之间，收到 {body.final_score:g}")
    if body.outcome == "adjusted" and body.final_score is None:
        return _err(422, "“调整得分”需要填写最终得分")
    final = 100.0 if body.outcome == "overturned" and body.final_score is None else body.final_score

    def act(store: Any) -> dict[str, Any]:
        return store.decide(call_id, body.outcome, principal.name, final_score=final, note=_clean(body.note))

    return await _store_action(request, call_id, act)


# ---------------------------------------------------------------- appeals


@router.get("/console/qa/appeals", response_class=HTMLResponse)
async def appeals_page(request: Request, principal: Principal = Depends(page_user("qa:appeal"))) -> Response:
    db = _review_db(request)
    if db is None:
        return _off(request, principal, "复核库")
    call = request.query_params.get("call", "").strip()
    if call:
        return RedirectResponse(f"/console/qa/calls/{quote(call, safe='')}", status_code=303)
    everyone = principal.can("qa:read")

    def work() -> list[dict[str, Any]]:
        with queries.open_store(db) as store:
            sql = ("SELECT a.*, c.score, c.agent_id AS call_agent, (SELECT outcome FROM decisions d WHERE"
                   " d.appeal_id=a.appeal_id ORDER BY id DESC LIMIT 1) AS outcome, (SELECT final_score FROM decisions d"
                   " WHERE d.appeal_id=a.appeal_id ORDER BY id DESC LIMIT 1) AS final_score FROM appeals a"
                   " JOIN calls c ON c.call_id=a.call_id")  # fmt: skip
            args: list[Any] = []
            if not everyone:
                sql += " WHERE a.filed_by=?"
                args.append(principal.name)
            sql += " ORDER BY a.status='open' DESC, a.appeal_id DESC LIMIT 200"
            return [dict(r) for r in store.conn.execute(sql, args)]

    rows = await run_in_threadpool(work)
    for r in rows:
        r["outcome_name"] = queries.OUTCOME_NAMES.get(r["outcome"] or "", "")
    return _page(request, "appeals.html", principal, "申诉", "appeals", appeals=rows, everyone=everyone)


# ---------------------------------------------------------------- reports


@router.get("/console/qa/reports", response_class=HTMLResponse)
async def reports_page(request: Request, principal: Principal = Depends(page_user("qa:read"))) -> HTMLResponse:
    db = _review_db(request)
    if db is None:
        return _off(request, principal, "复核库")
    job = request.query_params.get("job", "").strip()
    job = job if jobs.valid_job_id(job) else ""
    jobs_dir = _jobs_dir(request)

    def work() -> dict[str, Any]:
        with queries.open_store(db) as store:
            agents = queries.agent_rows(store, job)
            cal = calibration(store)
            pairs = store.agreement_rows()
        return {"agents": agents, "cal": cal, "pairs": pairs,
                "job_list": jobs.list_jobs(jobs_dir, 30) if jobs_dir else []}  # fmt: skip

    data = await run_in_threadpool(work)
    names = queries.rule_names()
    agents = data["agents"]
    agent_chart = charts.hbars(
        [(a["agent"], a["mean_score"], f"{a['agent']}：平均 {fmt_num(a['mean_score'])} 分（{a['calls']} 通）")
         for a in agents[:40]],
        max_value=100, label="坐席平均得分", threshold=60,
    )  # fmt: skip
    taboo_chart = charts.hbars(
        [(a["agent"], 100 * a["taboo_rate"] if a["taboo_rate"] is not None else None,
          f"{a['agent']}：忌语率 {fmt_pct(a['taboo_rate'])}，高风险率 {fmt_pct(a['risk_rate'])}") for a in agents[:40]],
        max_value=100, label="坐席忌语率", fmt="{:.0f}%",
    )  # fmt: skip
    cal = data["cal"]
    precision = charts.precision_chart(cal["rules"], names)
    scatter = charts.scatter([(float(p["machine_score"]), float(p["human_score"]),
                               f"{p['call_id']}：机器 {p['machine_score']} / 人工 {p['human_score']}")
                              for p in data["pairs"] if p["machine_score"] is not None])  # fmt: skip
    return _page(request, "reports.html", principal, "质检报表", "reports", agents=agents, agent_chart=agent_chart,
                 taboo_chart=taboo_chart, cal=cal, precision_chart=precision, scatter_chart=scatter, job=job,
                 job_list=data["job_list"], rule_name=lambda r: queries.rule_name(r, names))  # fmt: skip


@router.get("/console/qa/api/reports")
async def reports_api(request: Request, principal: Principal = Depends(require_any("qa:read"))) -> Response:
    db = _review_db(request)
    if db is None:
        return _err(404, "服务未配置复核库（review_db）", "not configured")
    job = request.query_params.get("job", "").strip()

    def work() -> dict[str, Any]:
        with queries.open_store(db) as store:
            return {"agents": queries.agent_rows(store, job if jobs.valid_job_id(job) else ""),
                    "calibration": calibration(store)}  # fmt: skip

    return JSONResponse(await run_in_threadpool(work))
