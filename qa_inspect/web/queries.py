"""Read-side queries of the QA pages over the review store: the results table, one call, per-agent stats."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from qa_inspect.privacy import get_masker
from qa_inspect.review.store import ReviewStore

STATUS_NAMES = {"pending": "待复核", "in_review": "复核中", "reviewed": "已复核", "appealed": "申诉中",
                "decided": "已裁定", "not_sampled": "未抽检"}  # fmt: skip
KIND_NAMES = {"taboo": "服务忌语", "missing": "应答缺失", "rule": "规则"}
OUTCOME_NAMES = {"upheld": "维持原判", "overturned": "撤销扣分", "adjusted": "调整得分"}
HIGH_RISK = 0.8
PAGE_SIZES = (25, 50, 100)

# The latest status of a call, as ReviewStore._status decides it, in SQL (so the table can sort and filter on it).
_STATUS_SQL = """CASE
 WHEN EXISTS (SELECT 1 FROM appeals a WHERE a.call_id=c.call_id AND a.status='open') THEN 'appealed'
 WHEN EXISTS (SELECT 1 FROM decisions d WHERE d.call_id=c.call_id) THEN 'decided'
 WHEN EXISTS (SELECT 1 FROM manual_scores m WHERE m.call_id=c.call_id) AND NOT EXISTS (SELECT 1 FROM hits h
   WHERE h.call_id=c.call_id AND h.active=1 AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.hit_id=h.hit_id))
   THEN 'reviewed'
 WHEN EXISTS (SELECT 1 FROM manual_scores m WHERE m.call_id=c.call_id) OR EXISTS (SELECT 1 FROM verdicts v
   JOIN hits h ON h.hit_id=v.hit_id WHERE h.call_id=c.call_id) THEN 'in_review'
 WHEN c.review=0 THEN 'not_sampled'
 ELSE 'pending' END"""
_INNER = f"""SELECT c.call_id, c.agent_id, c.date, c.score, c.fatal, c.complaint_risk, c.review, c.source,
 COALESCE(json_array_length(c.result, '$.taboo'), 0) AS taboo,
 (SELECT group_concat(rule, ' ') FROM (SELECT DISTINCT h.rule FROM hits h WHERE h.call_id=c.call_id AND h.active=1
   ORDER BY h.rule)) AS rules,
 {_STATUS_SQL} AS status
 FROM calls c"""
SORTS = {"call_id": "call_id", "agent": "agent_id", "date": "date", "score": "score", "risk": "complaint_risk",
         "taboo": "taboo", "rules": "rules", "review": "review", "status": "status"}  # fmt: skip
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS web_manual_scores_call ON manual_scores(call_id)",
    "CREATE INDEX IF NOT EXISTS web_appeals_call ON appeals(call_id)",
    "CREATE INDEX IF NOT EXISTS web_decisions_call ON decisions(call_id)",
    "CREATE INDEX IF NOT EXISTS web_calls_source ON calls(source)",
)


def open_store(path: Path) -> ReviewStore:
    store = ReviewStore(path)
    with store.conn:
        for sql in _INDEXES:
            store.conn.execute(sql)
    return store


@dataclass
class Filters:
    """The results table's filters, sort and page (all from the query string)."""

    job: str = ""
    agent: str = ""
    rule: str = ""
    status: str = ""
    q: str = ""
    risk_min: float | None = None
    risk_max: float | None = None
    score_min: float | None = None
    score_max: float | None = None
    review: bool = False
    sort: str = "score"
    dir: str = "asc"
    page: int = 1
    size: int = 50
    problems: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, params: dict[str, str]) -> Filters:
        f = cls()
        f.job = params.get("job", "").strip()
        f.agent = params.get("agent", "").strip()
        f.rule = params.get("rule", "").strip()
        f.q = params.get("q", "").strip()
        f.status = params.get("status", "").strip() if params.get("status", "") in STATUS_NAMES else ""
        f.review = params.get("review") in ("1", "true", "on")
        for key, low, high in (("risk_min", 0, 1), ("risk_max", 0, 1), ("score_min", 0, 100), ("score_max", 0, 100)):
            raw = params.get(key, "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                f.problems.append(f"“{raw}”不是数字（{_LABELS[key]}）")
                continue
            if not math.isfinite(value) or not low <= value <= high:
                f.problems.append(f"{_LABELS[key]}应在 {low}–{high} 之间，收到 {raw}")
                continue
            setattr(f, key, value)
        f.sort = params.get("sort", "score") if params.get("sort", "score") in SORTS else "score"
        f.dir = "desc" if params.get("dir") == "desc" else "asc"
        try:
            f.page = max(1, int(params.get("page", "1")))
        except ValueError:
            f.page = 1
        try:
            size = int(params.get("size", "50"))
            f.size = size if size in PAGE_SIZES else 50
        except ValueError:
            f.size = 50
        return f

    def query(self, **changes: Any) -> str:
        """The query string of these filters with some changed (for sort links and the pager)."""
        from urllib.parse import urlencode

        data: dict[str, Any] = {
            "job": self.job, "agent": self.agent, "rule": self.rule, "status": self.status, "q": self.q,
            "risk_min": self.risk_min, "risk_max": self.risk_max, "score_min": self.score_min,
            "score_max": self.score_max, "review": "1" if self.review else "", "sort": self.sort, "dir": self.dir,
            "page": self.page, "size": self.size,
        }  # fmt: skip
        data.update(changes)
        return urlencode({k: ("" if v is None else (f"{v:g}" if isinstance(v, float) else v)) for k, v in data.items()
                          if v not in (None, "") and not (k == "page" and v == 1) and not (k == "size" and v == 50)})


_LABELS = {"risk_min": "投诉风险下限", "risk_max": "投诉风险上限", "score_min": "得分下限", "score_max": "得分上限"}


def results(store: ReviewStore, f: Filters) -> dict[str, Any]:
    """One page of the results table, its total, and the choices of the filter menus."""
    where, args = [], []
    if f.job:
        where.append("c.source LIKE ?")
        args.append(f"{f.job}.jsonl:%")
    if f.agent:
        where.append("c.agent_id = ?")
        args.append(f.agent)
    if f.q:
        where.append("c.call_id LIKE ?")
        args.append("%" + f.q.replace("%", "").replace("_", "") + "%")
    if f.rule:
        where.append("EXISTS (SELECT 1 FROM hits h WHERE h.call_id=c.call_id AND h.active=1 AND h.rule=?)")
        args.append(f.rule)
    for key, column, op in (("risk_min", "complaint_risk", ">="), ("risk_max", "complaint_risk", "<="),
                            ("score_min", "score", ">="), ("score_max", "score", "<=")):  # fmt: skip
        value = getattr(f, key)
        if value is not None:
            where.append(f"c.{column} {op} ?")
            args.append(value)
    if f.review:
        where.append("c.review = 1")
    inner = _INNER + (" WHERE " + " AND ".join(where) if where else "")
    outer_where, outer_args = "", []
    if f.status:
        outer_where, outer_args = " WHERE status = ?", [f.status]
    conn = store.conn
    total = conn.execute(f"SELECT COUNT(*) FROM ({inner}){outer_where}", [*args, *outer_args]).fetchone()[0]
    pages = max(1, math.ceil(total / f.size))
    f.page = min(f.page, pages)
    column = SORTS[f.sort]
    direction = "DESC" if f.dir == "desc" else "ASC"
    nulls = f"{column} IS NULL, "  # empty values last whichever the direction
    rows = conn.execute(
        f"SELECT * FROM ({inner}){outer_where} ORDER BY {nulls}{column} {direction}, call_id LIMIT ? OFFSET ?",
        [*args, *outer_args, f.size, (f.page - 1) * f.size],
    ).fetchall()
    out = []
    for r in rows:
        d = dict(r)
        d["rules"] = (d["rules"] or "").split()
        d["status_name"] = STATUS_NAMES.get(d["status"], d["status"])
        d["job"] = str(d.pop("source") or "").split(".jsonl:")[0]
        out.append(d)
    return {"rows": out, "total": total, "page": f.page, "pages": pages}


def choices(store: ReviewStore) -> dict[str, list[str]]:
    conn = store.conn
    agents = [r[0] for r in conn.execute("SELECT DISTINCT agent_id FROM calls WHERE agent_id IS NOT NULL ORDER BY 1")]
    rules = [r[0] for r in conn.execute("SELECT DISTINCT rule FROM hits WHERE active=1 ORDER BY 1")]
    return {"agents": agents, "rules": rules}


# ---------------------------------------------------------------- one call


@lru_cache(maxsize=8)
def rule_info(scorecard: str | None = None) -> dict[str, dict[str, Any]]:
    """Scorecard item id → name, deduction, per_hit, fatal (the bundled scorecard unless told)."""
    from qa_inspect.scorecard import load_scorecard

    try:
        sc = load_scorecard(scorecard)
    except Exception:  # a scorecard that no longer loads: rules are shown by id
        return {}
    return {i.id: {"name": i.name, "deduction": i.deduction, "per_hit": i.per_hit, "fatal": i.fatal,
                   "max_deduction": i.max_deduction} for i in sc.items}  # fmt: skip


def rule_name(rule: str, names: dict[str, str]) -> str:
    if rule in names:
        return names[rule]
    if rule.startswith("taboo:"):
        return "疑似服务忌语（模型识别）" if rule.endswith("model") else "服务忌语"
    return rule


def rule_names() -> dict[str, str]:
    return {k: v["name"] for k, v in rule_info().items()}


def _segments(text: str, marks: list[dict[str, Any]], mask: bool) -> list[dict[str, Any]]:
    """Split a turn's text at the hits' span boundaries: [{text, hits: [marks covering it]}]."""
    m = get_masker(mask)
    spans = [(max(0, s), min(len(text), e), h) for h in marks for s, e in [h["span"]] if 0 <= s < e]
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out = []
    for a, b in itertools.pairwise(cuts):
        if a >= b:
            continue
        covering = [h for s, e, h in spans if s <= a and b <= e]
        piece = text[a:b]
        ends = [h for s, e, h in spans if e == b]
        out.append({"text": piece if covering else m(piece), "hits": covering, "ends": ends,
                    "bad": any(h["kind"] == "taboo" for h in covering),
                    "title": "\n".join(h["title"] for h in covering)})
    return out


def call_view(store: ReviewStore, call_id: str, mask: bool = True) -> dict[str, Any]:
    """Everything the call page shows: turns split into highlighted segments, hits with verdicts, history."""
    call = store.call(call_id)
    result = call["result"]
    info = rule_info()
    deductions = {d.get("item"): d for d in result.get("deductions") or [] if isinstance(d, dict)}
    names = {k: v["name"] for k, v in info.items()}
    names.update({k: d.get("name") for k, d in deductions.items() if d.get("name")})
    latest = {
        r["hit_id"]: dict(r)
        for r in store.conn.execute(
            "SELECT v.* FROM verdicts v JOIN hits h ON h.hit_id=v.hit_id WHERE h.call_id=? AND v.id = "
            "(SELECT MAX(id) FROM verdicts w WHERE w.hit_id=v.hit_id)",
            (call_id,),
        )
    }
    m = get_masker(mask)
    hits = []
    for h in call["hits"]:
        rule = h["rule"]
        d = deductions.get(rule)
        item = info.get(rule, {})
        if d is not None:
            cost = f"本项扣 {d.get('points', 0):g} 分（{d.get('hits', 1)} 处）"
        elif rule.startswith("taboo:"):
            cost = "提示复核（不单独扣分）"
        else:
            cost = "不扣分"
        if item.get("fatal"):
            cost += " · 致命项"
        span = h["detail"].get("span")
        v = latest.get(h["hit_id"])
        hits.append({
            "ordinal": h["ordinal"], "rule": rule, "name": rule_name(rule, names), "kind": h["kind"],
            "kind_name": KIND_NAMES.get(h["kind"], h["kind"]), "source": h["source"], "turn": h["turn"],
            "text": m(h["text"] or ""), "span": span if isinstance(span, list) and len(span) == 2 else None,
            "cost": cost, "verdict": h["verdict"], "reviewer": v["reviewer"] if v else None,
            "note": v["note"] if v else None, "verdict_at": v["created_at"] if v else None,
            "detail": h["detail"], "links": h["links"],
            "title": f"#{h['ordinal']} {rule_name(rule, names)}（{rule}）· {cost}",
        })  # fmt: skip
    turns = []
    for i, t in enumerate(call["turns"] or []):
        text = str(t.get("text") or "")
        in_turn = [h for h in hits if h["turn"] == i]
        marked = [h for h in in_turn if h["span"] and h["span"][1] <= len(text) + 1]
        whole = [h for h in in_turn if h not in marked]
        turns.append({"i": i, "role": t.get("role"), "start": t.get("start"), "segments": _segments(text, marked, mask),
                      "whole": whole})  # fmt: skip
    dims = result.get("dimensions") or {}
    dimensions = [{"key": k, "name": v.get("name") or k, "score": v.get("score"), "max": v.get("max")}
                  for k, v in dims.items() if isinstance(v, dict)]  # fmt: skip
    audit = store.audit_log(call_id)
    for a in audit:
        try:
            a["detail"] = json.loads(a["detail"]) if a["detail"] else {}
        except json.JSONDecodeError:
            pass
        a["summary"] = _audit_summary(a)
    return {
        "call_id": call["call_id"], "agent_id": call["agent_id"], "date": call["date"], "channel": call["channel"],
        "score": call["score"], "fatal": bool(call["fatal"]), "fatal_items": result.get("fatal_items") or [],
        "complaint_risk": call["complaint_risk"], "empathy": call["empathy"], "review": bool(call["review"]),
        "review_reason": call["review_reason"], "status": call["status"],
        "status_name": STATUS_NAMES.get(call["status"] if call["review"] or call["status"] != "pending"
                                        else "not_sampled", call["status"]),
        "scorer": result.get("scorer"), "scorecard": result.get("scorecard"),
        "skipped_rules": result.get("skipped_rules") or [], "dimensions": dimensions,
        "deductions": [{**d, "name": d.get("name") or d.get("item")} for d in deductions.values()],
        "hits": hits, "turns": turns, "has_turns": bool(call["turns"]),
        "manual_scores": call["manual_scores"], "appeals": call["appeals"],
        "decisions": [{**d, "outcome_name": OUTCOME_NAMES.get(d["outcome"], d["outcome"])} for d in call["decisions"]],
        "open_appeal": next((a for a in call["appeals"] if a["status"] == "open"), None),
        "audit": audit, "job": str(call["source"] or "").split(".jsonl:")[0],
        "masked": mask,
    }  # fmt: skip


def reason_name(reason: str, names: dict[str, str] | None = None) -> str:
    """Chinese for a sampling reason (qa_inspect.sampling): fatal, item:X, risk>=0.8, top1%_risk, …"""
    if reason == "fatal":
        return "致命项"
    if reason.startswith("item:"):
        return "需复核规则：" + rule_name(reason[5:], names if names is not None else rule_names())
    if reason.startswith("risk>="):
        return "投诉风险 ≥ " + reason[6:]
    if reason.startswith("top") and reason.endswith("%_risk"):
        return f"投诉风险前 {reason[3:-6]}%"
    return {"agent_quota": "坐席抽检配额", "random_baseline": "随机抽检"}.get(reason, reason)


_ACTIONS = {"load": "导入", "verdict": "复核结论", "score": "人工评分", "label": "标注", "appeal": "提出申诉",
            "decide": "申诉裁定"}  # fmt: skip


def _audit_summary(a: dict[str, Any]) -> str:
    d = a.get("detail") if isinstance(a.get("detail"), dict) else {}
    action = a.get("action")
    if action == "verdict":
        return f"命中 #{d.get('hit')} {d.get('rule')}：{'确认' if d.get('correct') else '误报'}" + (
            f"（{d['note']}）" if d.get("note") else "")
    if action == "score":
        return f"人工评分 {d.get('score')}" + (f"（{d['note']}）" if d.get("note") else "")
    if action == "appeal":
        return f"申诉 #{d.get('appeal_id')}：{d.get('reason')}"
    if action == "decide":
        return f"{OUTCOME_NAMES.get(d.get('outcome'), d.get('outcome'))}，最终得分 {d.get('final_score')}" + (
            f"（{d['note']}）" if d.get("note") else "")
    return _ACTIONS.get(action, action or "")


def action_name(action: str) -> str:
    return _ACTIONS.get(action, action)


# ---------------------------------------------------------------- reports


def agent_rows(store: ReviewStore, job: str = "") -> list[dict[str, Any]]:
    """Per agent: calls, mean score, taboo rate, high-risk rate, reviewed calls and verdict agreement."""
    where, args = "", []
    if job:
        where, args = " WHERE c.source LIKE ?", [f"{job}.jsonl:%"]
    rows = store.conn.execute(
        "SELECT COALESCE(c.agent_id, '（未知坐席）') AS agent, COUNT(*) AS calls, AVG(c.score) AS mean_score,"
        " MIN(c.score) AS min_score, SUM(c.fatal) AS fatal,"
        " SUM(COALESCE(json_array_length(c.result, '$.taboo'), 0) > 0) AS taboo_calls,"
        f" SUM(c.complaint_risk >= {HIGH_RISK}) AS risk_calls, SUM(c.review) AS sampled"
        f" FROM calls c{where} GROUP BY 1 ORDER BY mean_score, agent",
        args,
    ).fetchall()
    verdicts = {
        r[0]: (r[1], r[2])
        for r in store.conn.execute(
            "SELECT COALESCE(c.agent_id, '（未知坐席）'), COUNT(*), SUM(v.correct) FROM hits h"
            " JOIN calls c ON c.call_id=h.call_id"
            " JOIN verdicts v ON v.id = (SELECT MAX(id) FROM verdicts w WHERE w.hit_id=h.hit_id)"
            f" WHERE h.active=1{where.replace(' WHERE', ' AND')} GROUP BY 1",
            args,
        )
    }
    out = []
    for r in rows:
        n = r["calls"]
        v_n, v_true = verdicts.get(r["agent"], (0, 0))
        out.append({
            "agent": r["agent"], "calls": n,
            "mean_score": None if r["mean_score"] is None else round(r["mean_score"], 1),
            "min_score": r["min_score"], "fatal": r["fatal"] or 0, "taboo_calls": r["taboo_calls"] or 0,
            "taboo_rate": (r["taboo_calls"] or 0) / n if n else None, "risk_calls": r["risk_calls"] or 0,
            "risk_rate": (r["risk_calls"] or 0) / n if n else None, "sampled": r["sampled"] or 0,
            "verdicts": v_n, "agreement": (v_true or 0) / v_n if v_n else None,
        })  # fmt: skip
    return out

