"""The assist engine: per-call state and what the agent sees after each turn (scripts, taboo and risk alerts)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from assist.signals import (
    OpeningChecker,
    RiskScorer,
    RiskSignal,
    TabooChecker,
    TabooFinding,
    bigrams,
    content_chars,
    reuse,
    risk_queries,
)
from kefu.io import KefuError
from kefu.schemas import normalize_role
from kefu.text import normalize
from knowledge_base.schema import Hit, Retriever
from models.classifier_base import CallClassifier

log = logging.getLogger(__name__)

SENSITIVE_TAGS: tuple[str, ...] = ("敏感场景",)
OPENING_HINT = "请使用标准开头语：您好，国家电网95598，工号XXXX，很高兴为您服务。"


class AssistError(KefuError):
    """A turn or a setting the engine cannot accept (unknown role, empty text, bad threshold)."""


class GapLogger(Protocol):
    """Receives customer texts that no script answered (for `kefu kb gaps`)."""

    def __call__(self, text: str, *, call_id: str, best_id: str | None, best_score: float | None) -> None: ...


class FeedbackSink(Protocol):
    """Where suggestion events go and where bounded ranking adjustments come from (see assist.feedback)."""

    def record(self, call_id: str, script_id: str, action: str, *, source: str = "agent", score: float | None = None,
               scenario: str = "") -> None: ...

    def adjustment(self, script_id: str) -> float: ...


class AlertPublisher(Protocol):
    """The supervisors' stream (see assist.alerts)."""

    def publish(self, alert: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Thresholds and sizes of the engine; every value is checked where the config is built."""

    k: int = 3  # suggestions per customer turn
    min_score: float = 0.35  # below this calibrated score a script is not shown (and the text is a gap)
    confident_score: float = 0.7  # at or above: the suggestion is marked confident
    search_k: int = 10  # hits asked from the retriever (more than k: context, feedback, sensitive scripts)
    context_decay: float = 0.5  # weight of a script's score carried to the next customer turn
    context_size: int = 8  # scripts kept in the rolling context
    short_chars: int = 6  # customer turns shorter than this are searched together with the previous one
    risk_threshold: float = 0.6  # call risk at or above: alert, sensitive script, supervisors' stream
    risk_reset: float = 0.4  # call risk must fall below this before a new risk alert (hysteresis)
    risk_decay: float = 0.85  # how much of the call risk carries to the next customer turn
    taboo_threshold: float = 0.8  # classifier taboo probability that alerts without a lexicon hit
    used_threshold: float = 0.5  # share of an agent turn's bigrams taken from a shown script to count as used
    opening_turns: int = 1  # agent turns in which the standard opening must appear
    max_turns: int = 300  # turns kept per session (older ones are dropped from memory, still counted)
    max_history_chars: int = 6000  # and at most this much text: a session stays within a few dozen KB
    max_text_chars: int = 2000
    # Use the index's own calibrated threshold (fitted at build time) as min_score when it has one;
    # an explicit --min-score turns this off.
    follow_index_threshold: bool = True

    def __post_init__(self) -> None:
        for name in ("k", "search_k", "context_size", "max_turns", "max_text_chars", "opening_turns",
                     "max_history_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise AssistError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("min_score", "confident_score", "context_decay", "risk_threshold", "risk_reset", "risk_decay",
                     "taboo_threshold", "used_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise AssistError(f"{name} must be between 0 and 1, got {value!r}")
        if self.confident_score < self.min_score:
            raise AssistError(
                f"confident_score ({self.confident_score}) must be >= min_score ({self.min_score})")
        if self.risk_reset > self.risk_threshold:
            raise AssistError(f"risk_reset ({self.risk_reset}) must be <= risk_threshold ({self.risk_threshold})")
        if self.search_k < self.k:
            raise AssistError(f"search_k ({self.search_k}) must be >= k ({self.k})")
        if self.short_chars < 0:
            raise AssistError(f"short_chars must be >= 0, got {self.short_chars}")


@dataclass(slots=True)
class Suggestion:
    """A script shown to the agent."""

    id: str
    scenario: str
    script: str
    score: float  # ranking score: calibrated retriever score (+ bounded feedback adjustment), 0–1
    base_score: float  # the retriever's calibrated score (thresholds apply to this one)
    confident: bool
    category: str = ""
    tags: list[str] = field(default_factory=list)
    matched_terms: list[str] = field(default_factory=list)
    reason: str = "match"  # match: this turn; context: earlier turns; risk: sensitive-scenario script

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario, "script": self.script, "score": round(self.score, 4),
                "base_score": round(self.base_score, 4), "confident": self.confident, "category": self.category,
                "tags": self.tags, "matched_terms": self.matched_terms, "reason": self.reason}


@dataclass(slots=True)
class Alert:
    """A warning for the agent (and, for risk, the supervisors)."""

    type: str  # taboo, complaint_risk, reminder
    message: str
    severity: str = "warning"  # info, warning, critical
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "severity": self.severity, **self.detail}


@dataclass(slots=True)
class TurnResult:
    """What the agent sees after one turn."""

    call_id: str
    turn: int
    role: str
    suggestions: list[Suggestion] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    risk: float | None = None  # this customer turn's complaint risk
    call_risk: float = 0.0  # the call's risk level after this turn
    scenario: dict[str, Any] | None = None
    used_script: dict[str, Any] | None = None
    gap: bool = False
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "turn": self.turn, "role": self.role,
                "suggestions": [s.to_dict() for s in self.suggestions], "alerts": [a.to_dict() for a in self.alerts],
                "risk": None if self.risk is None else round(self.risk, 4), "call_risk": round(self.call_risk, 4),
                "scenario": self.scenario, "used_script": self.used_script, "gap": self.gap,
                "latency_ms": round(self.latency_ms, 3)}


class CallSession:
    """The live state of one call. Slots keep a typical session to a few kilobytes."""

    __slots__ = ("agent_turns", "alerts", "call_id", "call_risk", "context", "created", "epoch", "last_seen", "lock",
                 "n_turns", "opening_reminded", "opening_seen", "risk_alerted", "risks", "scenario", "shown", "turns",
                 "used", "version")

    def __init__(self, call_id: str, now: float | None = None) -> None:
        self.call_id = call_id
        self.created = self.last_seen = time.time() if now is None else now
        self.turns: list[tuple[str, str]] = []  # (role, text), the last max_turns
        self.n_turns = 0
        self.agent_turns = 0
        self.context: dict[str, float] = {}  # script id → decayed score over recent customer turns
        self.scenario: str | None = None  # script id of the scenario in play
        self.epoch = 0  # bumped when the scenario changes: shown scripts may be shown again
        self.shown: dict[str, int] = {}  # script id → epoch when last shown
        self.used: list[str] = []  # script ids the agent used, in order
        self.risks: list[float] = []  # per customer turn
        self.call_risk = 0.0
        self.risk_alerted = False
        self.opening_seen = False
        self.opening_reminded = False
        self.alerts: list[dict[str, Any]] = []  # the last few, for GET /v1/calls/{id}
        self.version = 0  # bumped by every turn (optimistic concurrency in shared stores)
        self.lock = threading.Lock()

    def customer_texts(self, n: int) -> list[str]:
        """The last n customer turns, oldest first."""
        out = [text for role, text in reversed(self.turns) if role == "customer"][:n]
        out.reverse()
        return out

    def to_state(self) -> dict[str, Any]:
        """A JSON-able copy of the state (what a shared session store saves)."""
        return {"call_id": self.call_id, "created": self.created, "last_seen": self.last_seen,
                "turns": [list(t) for t in self.turns], "n_turns": self.n_turns, "agent_turns": self.agent_turns,
                "context": self.context, "scenario": self.scenario, "epoch": self.epoch, "shown": self.shown,
                "used": self.used, "risks": self.risks, "call_risk": self.call_risk,
                "risk_alerted": self.risk_alerted, "opening_seen": self.opening_seen,
                "opening_reminded": self.opening_reminded, "alerts": self.alerts, "version": self.version}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CallSession:
        s = cls(state["call_id"], state.get("created"))
        s.last_seen = state.get("last_seen", s.created)
        s.turns = [(r, t) for r, t in state.get("turns", [])]
        for name in ("n_turns", "agent_turns", "context", "scenario", "epoch", "shown", "used", "risks", "call_risk",
                     "risk_alerted", "opening_seen", "opening_reminded", "alerts", "version"):
            if name in state:
                setattr(s, name, state[name])
        return s

    def describe(self, scripts: Callable[[str], Hit | None] | None = None) -> dict[str, Any]:
        """The call's state for GET /v1/calls/{id}."""
        scenario = None
        if self.scenario:
            hit = scripts(self.scenario) if scripts else None
            scenario = {"id": self.scenario, "scenario": hit.scenario if hit else ""}
        return {"call_id": self.call_id, "created": self.created, "last_seen": self.last_seen,
                "n_turns": self.n_turns, "turns": [{"role": r, "text": t} for r, t in self.turns],
                "scenario": scenario, "shown": sorted(self.shown), "used": list(self.used),
                "risk_trajectory": [round(r, 4) for r in self.risks], "call_risk": round(self.call_risk, 4),
                "opening_seen": self.opening_seen, "alerts": list(self.alerts)}


class AssistEngine:
    """Turns in, suggestions and alerts out. Every collaborator is injected and optional except the retriever.

    Thread-safe: a call's turns are serialised by the session's lock; shared caches are plain dicts whose
    single operations are atomic, and the retriever is swapped by one assignment (hot reload), so a turn
    in flight keeps the retriever it started with.
    """

    def __init__(
        self,
        retriever: Retriever | None,
        *,
        config: EngineConfig | None = None,
        classifier: CallClassifier | None = None,
        taboo: TabooChecker | None = None,
        risk: RiskScorer | None = None,
        opening: OpeningChecker | None = None,
        gap_logger: GapLogger | None = None,
        feedback: FeedbackSink | None = None,
        alerts: AlertPublisher | None = None,
        sensitive_tags: Sequence[str] = SENSITIVE_TAGS,
        kb_version: str | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.classifier = classifier
        self.taboo = taboo
        self.risk = risk
        self.opening = opening
        self.gap_logger = gap_logger
        self.feedback = feedback
        self.alerts = alerts
        self.sensitive_tags = frozenset(sensitive_tags)
        self._retriever = retriever
        self.kb_version = kb_version
        self._scripts: dict[str, Hit] = {}  # id → the script's latest hit (text, scenario, tags)
        self._bigrams: dict[str, frozenset[str]] = {}
        self._sensitive: dict[str, Hit | None] = {}  # risk kind → sensitive-scenario script

    # --- the knowledge base --------------------------------------------------------------------------
    @property
    def retriever(self) -> Retriever | None:
        return self._retriever

    def set_retriever(self, retriever: Retriever | None, kb_version: str | None = None) -> None:
        """Swap the index (hot reload): new turns use it at once, turns in flight finish on the old one."""
        self._scripts = {}
        self._bigrams = {}
        self._sensitive = {}
        self._retriever = retriever
        self.kb_version = kb_version
        threshold = getattr(getattr(retriever, "fusion", None), "threshold", None)
        if self.config.follow_index_threshold and isinstance(threshold, (int, float)) and 0 < threshold < 1:
            cfg = self.config
            self.config = replace(cfg, min_score=float(threshold),
                                  confident_score=max(cfg.confident_score, float(threshold)))
        log.info("assist engine now serves kb_version %s (min_score %.2f)", kb_version, self.config.min_score)

    def warm_up(self) -> None:
        """Build the lazy tables (normalisation, lexicons) now, so that the first call is not slow."""
        text = "您好，国家电网95598。我家停电了，我要投诉"
        content_chars(text)
        bigrams(text)
        if self.taboo is not None:
            self.taboo.check(text)
        if self.risk is not None:
            self.risk.score(text)
        if self.opening is not None:
            self.opening.has_opening(text)

    def script(self, script_id: str) -> Hit | None:
        return self._scripts.get(script_id)

    def _search(self, retriever: Retriever, text: str, k: int) -> list[Hit]:
        hits = retriever.search(text, k)
        cache = self._scripts
        if len(cache) > 50_000:  # bounded even for a huge KB
            cache.clear()
        for h in hits:
            cache[h.id] = h
        return hits

    # --- turns ---------------------------------------------------------------------------------------
    def process(self, session: CallSession, role: str, text: str) -> TurnResult:
        """Feed one turn of the call; returns what the agent sees. Holds the session's lock while it runs."""
        canon = normalize_role(role)
        if canon is None:
            raise AssistError(f"role must be agent or customer (or 坐席/客服/客户/用户), got {role!r}")
        if not isinstance(text, str) or not text.strip():
            raise AssistError("text must be a non-empty string")
        if len(text) > self.config.max_text_chars:
            raise AssistError(f"text must be at most {self.config.max_text_chars} characters, got {len(text)}")
        t0 = time.perf_counter()
        with session.lock:
            result = TurnResult(call_id=session.call_id, turn=session.n_turns, role=canon)
            if canon == "customer":
                self._customer(session, text, result)
            else:
                self._agent(session, text, result)
            session.turns.append((canon, text))
            if len(session.turns) > self.config.max_turns:
                del session.turns[: len(session.turns) - self.config.max_turns]
            while len(session.turns) > 1 and sum(len(t) for _, t in session.turns) > self.config.max_history_chars:
                del session.turns[0]
            session.n_turns += 1
            session.version += 1
            session.last_seen = time.time()
            result.call_risk = session.call_risk
            if result.alerts:
                session.alerts.extend({"turn": result.turn, **a.to_dict()} for a in result.alerts)
                del session.alerts[:-20]
        result.latency_ms = (time.perf_counter() - t0) * 1000.0
        return result

    def _classify(self, text: str, role: str) -> dict[str, float]:
        if self.classifier is None:
            return {}
        try:
            return self.classifier.predict_turns([text], [role])[0]
        except Exception:  # a broken model must not take the live service down: lexicon signals remain
            log.exception("classifier failed on a %s turn; continuing without it", role)
            return {}

    def _customer(self, s: CallSession, text: str, result: TurnResult) -> None:
        cfg = self.config
        retriever = self._retriever
        hits: list[Hit] = []
        content = content_chars(text)
        substantive = content >= 4
        if retriever is not None and content >= 2:  # pure small talk (好的谢谢) is not worth a search
            query = text
            if len(normalize(text)) < cfg.short_chars:
                previous = s.customer_texts(1)
                if previous:
                    query = previous[-1] + " " + text  # a short follow-up only makes sense with what came before
            hits = self._search(retriever, query, cfg.search_k)
        # Rolling context: earlier scores decay, this turn's hits enter at full weight.
        ctx = {sid: score * cfg.context_decay for sid, score in s.context.items()}
        for h in hits:
            if h.score > ctx.get(h.id, 0.0):
                ctx[h.id] = h.score
        ctx = dict(sorted(ctx.items(), key=lambda kv: kv[1], reverse=True)[: cfg.context_size])
        s.context = {sid: round(v, 4) for sid, v in ctx.items() if v >= 0.01 and sid in self._scripts}
        best = max((h.score for h in hits), default=None)
        if retriever is not None and substantive and (best is None or best < cfg.min_score):
            result.gap = True
            if self.gap_logger is not None:
                top = max(hits, key=lambda h: h.score) if hits else None
                try:
                    self.gap_logger(text, call_id=s.call_id, best_id=top.id if top else None, best_score=best)
                except Exception:
                    log.exception("could not log a knowledge gap")
        # The scenario in play: the best script of the context, once it is above the threshold.
        eligible = [(sid, v) for sid, v in s.context.items() if v >= cfg.min_score]
        if eligible and eligible[0][0] != s.scenario:
            s.scenario = eligible[0][0]
            s.epoch += 1  # the context moved on: scripts shown for another scenario may come back
        if s.scenario and (hit := self._scripts.get(s.scenario)):
            result.scenario = {"id": hit.id, "scenario": hit.scenario}
        # Ranking: bounded feedback adjustment on top of the calibrated score; never shown twice per scenario.
        by_id = {h.id: h for h in hits}
        ranked: list[tuple[float, str, float]] = []
        for sid, base in eligible:
            adj = self.feedback.adjustment(sid) if self.feedback is not None else 0.0
            ranked.append((min(1.0, max(0.0, base + adj)), sid, base))
        ranked.sort(key=lambda r: r[0], reverse=True)
        for score, sid, base in ranked:
            if len(result.suggestions) >= cfg.k:
                break
            if s.shown.get(sid) == s.epoch:
                continue
            h = self._scripts.get(sid)
            if h is None:
                continue
            current = by_id.get(sid)
            result.suggestions.append(self._suggestion(h, score, base, current, "match" if current else "context"))
        # Complaint risk of this turn and of the call.
        signal = self.risk.score(text) if self.risk is not None else RiskSignal(0.0)
        model = self._classify(text, "customer").get("risk")
        turn_risk = max(signal.risk, model or 0.0)
        result.risk = turn_risk
        s.risks.append(round(turn_risk, 4))
        del s.risks[: -cfg.max_turns]
        s.call_risk = max(turn_risk, s.call_risk * cfg.risk_decay)
        if s.risk_alerted and s.call_risk < cfg.risk_reset:
            s.risk_alerted = False
        if s.call_risk >= cfg.risk_threshold and not s.risk_alerted:
            s.risk_alerted = True
            self._risk_alert(s, text, signal, model, hits, result)
        for sug in result.suggestions:
            s.shown[sug.id] = s.epoch
            if self.feedback is not None:
                self.feedback.record(s.call_id, sug.id, "shown", source="engine", score=sug.base_score,
                                     scenario=sug.scenario)
        if len(s.shown) > 64:
            for sid in list(s.shown)[: len(s.shown) - 64]:
                del s.shown[sid]

    def _suggestion(self, h: Hit, score: float, base: float, current: Hit | None, reason: str) -> Suggestion:
        return Suggestion(id=h.id, scenario=h.scenario, script=h.script, score=score, base_score=base,
                          confident=base >= self.config.confident_score, category=h.category, tags=list(h.tags),
                          matched_terms=list(current.matched_terms) if current else [], reason=reason)

    def _risk_alert(self, s: CallSession, text: str, signal: RiskSignal, model: float | None, hits: list[Hit],
                    result: TurnResult) -> None:
        kinds = signal.kinds
        sensitive = self._sensitive_script(hits, kinds)
        why = "、".join(t["phrase"] for t in signal.triggers[:3]) or "模型判断"
        alert = Alert(
            type="complaint_risk",
            message=f"投诉风险升高（{s.call_risk:.2f}）：{why}。请先安抚致歉，必要时按风险客户升级处置。",
            severity="critical" if s.call_risk >= 0.8 else "warning",
            detail={"risk": round(s.call_risk, 4), "triggers": signal.triggers[:5], "kinds": kinds,
                    "model_risk": None if model is None else round(model, 4),
                    "script_id": sensitive.id if sensitive else None},
        )
        result.alerts.append(alert)
        if sensitive is not None and all(sug.id != sensitive.id for sug in result.suggestions):
            result.suggestions.insert(0, self._suggestion(sensitive, max(sensitive.score, self.config.min_score),
                                                          sensitive.score, None, "risk"))
        if self.alerts is not None:
            self.alerts.publish({"call_id": s.call_id, "turn": result.turn, "text": text[:200], **alert.to_dict()})

    def _sensitive_script(self, hits: list[Hit], kinds: list[str]) -> Hit | None:
        """A calming / apology / escalation script: a confident one among this turn's hits, else the one the
        canned query of the risk kind finds (assist/data/risk_queries.csv), else any sensitive hit."""
        for h in hits:
            if self.sensitive_tags.intersection(h.tags) and h.score >= self.config.min_score:
                return h
        retriever = self._retriever
        if retriever is None:
            return None
        for kind in [*kinds, "default"]:
            if kind in self._sensitive:
                found = self._sensitive[kind]
            else:
                query = risk_queries().get(kind)
                found = None
                if query:
                    found = next((h for h in self._search(retriever, query, 10)
                                  if self.sensitive_tags.intersection(h.tags)), None)
                self._sensitive[kind] = found
            if found is not None:
                return found
        return next((h for h in hits if self.sensitive_tags.intersection(h.tags)), None)

    def _agent(self, s: CallSession, text: str, result: TurnResult) -> None:
        cfg = self.config
        s.agent_turns += 1
        findings: list[TabooFinding] = self.taboo.check(text) if self.taboo is not None else []
        probs = self._classify(text, "agent")
        p_taboo = probs.get("taboo")
        if not findings and p_taboo is not None and p_taboo >= cfg.taboo_threshold:
            findings.append(TabooFinding(text=text[:60], source="model", category="模型识别", severity=2,
                                         probability=p_taboo))
        if findings:
            worst = max(f.severity for f in findings)
            words = "、".join(dict.fromkeys(f.text for f in findings))
            alert = Alert(type="taboo", message=f"服务忌语：“{words}”，请注意用语规范。",
                          severity="critical" if worst >= 3 else "warning",
                          detail={"findings": [f.to_dict() for f in findings], "source": findings[0].source})
            result.alerts.append(alert)
            if worst >= 3 and self.alerts is not None:
                self.alerts.publish({"call_id": s.call_id, "turn": result.turn, "text": text[:200], **alert.to_dict()})
        if self.opening is not None and not s.opening_seen:
            if self.opening.has_opening(text):
                s.opening_seen = True
            elif s.agent_turns >= cfg.opening_turns and not s.opening_reminded:
                s.opening_reminded = True
                result.alerts.append(Alert(type="reminder", message=OPENING_HINT, severity="info",
                                           detail={"code": "opening_missing"}))
        # Which shown script (if any) the agent is reading from.
        agent = bigrams(text)
        if len(agent) >= 6:
            best_id, best = None, 0.0
            for sid in list(s.shown)[-12:]:
                grams = self._bigrams.get(sid)
                if grams is None:
                    hit = self._scripts.get(sid)
                    if hit is None:
                        continue
                    grams = self._bigrams[sid] = bigrams(hit.script)
                overlap = reuse(agent, grams)
                if overlap > best:
                    best_id, best = sid, overlap
            if best_id is not None and best >= cfg.used_threshold:
                hit = self._scripts.get(best_id)
                result.used_script = {"id": best_id, "scenario": hit.scenario if hit else "",
                                      "overlap": round(best, 4)}
                if best_id not in s.used:
                    s.used.append(best_id)
                    if self.feedback is not None:
                        self.feedback.record(s.call_id, best_id, "used", source="auto", score=best,
                                             scenario=hit.scenario if hit else "")
