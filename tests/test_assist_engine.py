"""The assist engine with fakes: suggestions, context, repeats, gaps, taboo, opening, risk, used scripts, feedback."""

from __future__ import annotations

from pathlib import Path

import pytest

from assist.alerts import MemoryAlertBus
from assist.engine import AssistEngine, AssistError, CallSession, EngineConfig
from assist.feedback import FeedbackPolicy, FeedbackStore
from assist.sessions import SessionStore
from assist.signals import LexiconTaboo, PhraseOpening, PhraseRisk, is_substantive
from knowledge_base.schema import Hit
from tests.assist_support import FakeClassifier, FakeRetriever, bundled_scripts

OPENING = "您好，国家电网95598，工号1024，很高兴为您服务。"


@pytest.fixture(scope="module")
def retriever() -> FakeRetriever:
    return FakeRetriever(bundled_scripts())


@pytest.fixture(scope="module")
def signals() -> dict:
    return {"taboo": LexiconTaboo(), "risk": PhraseRisk(), "opening": PhraseOpening()}


class Gaps:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str, *, call_id: str, best_id: str | None, best_score: float | None) -> None:
        self.texts.append(text)


def make(retriever, signals, **kw) -> AssistEngine:
    return AssistEngine(retriever, **signals, **kw)


def test_customer_turn_gets_the_right_script_with_terms(retriever, signals) -> None:
    engine = make(retriever, signals)
    s = CallSession("C1")
    engine.process(s, "agent", OPENING)
    r = engine.process(s, "customer", "喂 我家停电了 整个屋子都没电 空开也没跳")
    assert r.suggestions and r.suggestions[0].id == "K0001"
    top = r.suggestions[0]
    assert top.scenario == "居民整户停电报修" and top.script.startswith("您好")
    assert top.matched_terms and 0.35 <= top.score <= 1.0
    assert len(r.suggestions) <= 3
    assert r.scenario == {"id": "K0001", "scenario": "居民整户停电报修"}
    assert all(s.base_score >= 0.35 for s in r.suggestions)


def test_confident_mark_and_threshold(retriever, signals) -> None:
    engine = make(retriever, signals, config=EngineConfig(min_score=0.35, confident_score=0.7))
    r = engine.process(CallSession("C2"), "customer", "这个月电费怎么这么多")
    assert r.suggestions[0].id == "K0038" and r.suggestions[0].confident
    strict = make(retriever, signals, config=EngineConfig(min_score=0.99, confident_score=0.99))
    r2 = strict.process(CallSession("C3"), "customer", "我想问问你们单位附近哪里有好吃的饭馆")
    assert r2.suggestions == [] and r2.gap


def test_unanswered_text_is_logged_as_gap_but_small_talk_is_not(retriever, signals) -> None:
    gaps = Gaps()
    engine = make(retriever, signals, gap_logger=gaps)
    s = CallSession("C4")
    engine.process(s, "customer", "请问你们那边能帮我开一张增值税专用发票吗")
    engine.process(s, "customer", "好的谢谢")
    assert gaps.texts == ["请问你们那边能帮我开一张增值税专用发票吗"]
    assert not is_substantive("嗯嗯 好的 谢谢您")


def test_suggestions_not_repeated_until_the_context_moves_on(retriever, signals) -> None:
    engine = make(retriever, signals)
    s = CallSession("C5")
    first = engine.process(s, "customer", "我家没电了 整户都停电了")
    assert "K0001" in [x.id for x in first.suggestions]
    again = engine.process(s, "customer", "家里一点电都没有了")
    assert "K0001" not in [x.id for x in again.suggestions]
    moved = engine.process(s, "customer", "还有这个月电费怎么这么多 比上个月翻了一倍")
    assert moved.suggestions[0].id == "K0038" and moved.scenario["id"] == "K0038"
    back = engine.process(s, "customer", "我家没电了 整户都停电了 你们快来修")
    assert back.suggestions[0].id == "K0001"  # a new scenario epoch: shown again


def test_short_follow_up_uses_the_rolling_context(retriever, signals) -> None:
    engine = make(retriever, signals)
    s = CallSession("C6")
    engine.process(s, "customer", "这个月电费怎么这么多")
    r = engine.process(s, "customer", "翻了一倍")
    assert r.scenario["id"] == "K0038"
    assert s.context and max(s.context, key=s.context.get) == "K0038"


def test_taboo_from_lexicon_and_model_and_polite_exception(retriever, signals) -> None:
    bus = MemoryAlertBus()
    engine = make(retriever, signals, classifier=FakeClassifier(), alerts=bus)
    s = CallSession("C7")
    engine.process(s, "agent", OPENING)
    r = engine.process(s, "agent", "这不归我们管，你找别人去。")
    taboo = [a for a in r.alerts if a.type == "taboo"]
    assert taboo and taboo[0].detail["source"] == "lexicon"
    assert any(f["text"] == "你找别人去" for f in taboo[0].detail["findings"])
    polite = engine.process(s, "agent", "不知道您现在方便接听电话吗？")
    assert not [a for a in polite.alerts if a.type == "taboo"]
    model = engine.process(s, "agent", "你给我闭嘴吧")
    found = [a for a in model.alerts if a.type == "taboo"]
    assert found and found[0].detail["findings"][0]["source"] in ("lexicon", "model")
    only_model = engine.process(s, "agent", "滚")
    assert next(a for a in only_model.alerts if a.type == "taboo").detail["source"] == "model"


def test_missing_opening_reminder_once(retriever, signals) -> None:
    engine = make(retriever, signals)
    s = CallSession("C8")
    r = engine.process(s, "agent", "喂，什么事？")
    assert [a.detail.get("code") for a in r.alerts if a.type == "reminder"] == ["opening_missing"]
    r2 = engine.process(s, "agent", "请讲。")
    assert not [a for a in r2.alerts if a.type == "reminder"]
    ok = CallSession("C9")
    assert not [a for a in engine.process(ok, "agent", OPENING).alerts if a.type == "reminder"]


def test_risk_alert_with_sensitive_script_and_supervisor_stream(retriever, signals) -> None:
    bus = MemoryAlertBus()
    engine = make(retriever, signals, alerts=bus)
    s = CallSession("C10")
    calm = engine.process(s, "customer", "我家停电了")
    assert calm.risk is not None and calm.risk < 0.6 and not calm.alerts
    r = engine.process(s, "customer", "都第三次打了还没人来修，再不来我就打12398投诉你们")
    risk = [a for a in r.alerts if a.type == "complaint_risk"]
    assert risk and risk[0].detail["risk"] >= 0.6
    assert "regulator_12398" in risk[0].detail["kinds"]
    sensitive = [x for x in r.suggestions if "敏感场景" in x.tags]
    assert sensitive, r.suggestions
    published = bus.since(0)
    assert published and published[0]["call_id"] == "C10" and published[0]["type"] == "complaint_risk"
    # Risk stays high: no second alert until it has calmed down (hysteresis).
    r2 = engine.process(s, "customer", "我要投诉你们")
    assert not [a for a in r2.alerts if a.type == "complaint_risk"]
    assert len(s.risks) == 3 and s.risks[1] >= 0.6


def test_negated_complaint_is_not_a_risk(signals) -> None:
    assert signals["risk"].score("我不是要投诉，我就问问电费").risk == 0.0
    assert signals["risk"].score("我要投诉").risk > 0.5
    assert signals["risk"].score("我的户号是1234567890123").risk == 0.0


def test_model_risk_counts_too(retriever, signals) -> None:
    engine = make(retriever, signals, classifier=FakeClassifier())
    r = engine.process(CallSession("C11"), "customer", "真是气死我了")
    assert r.risk == pytest.approx(0.9) and [a for a in r.alerts if a.type == "complaint_risk"]


def test_used_script_detected_and_recorded(retriever, signals, tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.sqlite")
    engine = make(retriever, signals, feedback=store)
    s = CallSession("C12")
    r = engine.process(s, "customer", "这个月电费怎么这么多")
    script = r.suggestions[0].script
    used = engine.process(s, "agent", script[:60])
    assert used.used_script and used.used_script["id"] == r.suggestions[0].id
    other = engine.process(s, "agent", "好的，请您稍等，我帮您查询一下。")
    assert other.used_script is None
    store.flush()
    counts = store.counts()[r.suggestions[0].id]
    assert counts["shown"] == 1 and counts["used"] == 1
    store.close()


def test_feedback_adjusts_ranking_within_bounds_after_enough_evidence(tmp_path: Path) -> None:
    policy = FeedbackPolicy(max_adjust=0.1, min_evidence=5)
    assert policy.adjust(4, 0) == 0.0  # not enough evidence yet
    assert policy.adjust(5, 0) == pytest.approx(0.1)
    assert policy.adjust(0, 50) == pytest.approx(-0.1)
    store = FeedbackStore(tmp_path / "fb.sqlite", policy=policy)
    for _ in range(6):
        store.record("C", "K0038", "dismissed")
        store.record("C", "K0001", "accepted")
        store.record("TR-practice-1", "K0002", "accepted")  # training replays are kept out of ranking
    store.flush()
    assert store.adjustment("K0002") == 0.0 and "K0002" not in {r["script_id"] for r in store.report()}
    assert store.adjustment("K0038") == pytest.approx(-0.1)
    assert store.adjustment("K0001") == pytest.approx(0.1)
    report = {r["script_id"]: r for r in store.report()}
    assert report["K0038"]["dismissed"] == 6 and report["K0038"]["adjustment"] == pytest.approx(-0.1)
    with pytest.raises(Exception, match="action must be one of"):
        store.record("C", "K1", "liked")
    store.close()


def test_bad_turns_and_config_are_refused(retriever) -> None:
    engine = AssistEngine(retriever)
    with pytest.raises(AssistError, match="role must be agent or customer"):
        engine.process(CallSession("C"), "robot", "hi")
    with pytest.raises(AssistError, match="non-empty"):
        engine.process(CallSession("C"), "customer", "   ")
    with pytest.raises(AssistError, match="confident_score"):
        EngineConfig(min_score=0.8, confident_score=0.5)
    with pytest.raises(AssistError, match="k must be"):
        EngineConfig(k=0)
    r = engine.process(CallSession("C"), "客户", "我家停电了")  # Chinese role alias
    assert r.role == "customer"


def test_session_store_expiry_and_eviction() -> None:
    now = [1000.0]
    store = SessionStore(max_sessions=2, ttl_s=60, clock=lambda: now[0])
    a, created = store.get_or_create("A")
    assert created and store.get_or_create("A")[1] is False
    store.get_or_create("B")
    now[0] += 1
    store.get("A")  # A is now the most recently used
    store.get_or_create("C")  # evicts B, the least recently used
    assert store.get("B") is None and store.get("A") is a and store.evicted == 1
    now[0] += 61
    assert store.get("A") is None and store.expired >= 1
    assert store.sweep() >= 0 and len(store) == 0


def test_session_state_round_trip_and_memory(retriever, signals) -> None:
    import pickle

    engine = make(retriever, signals)
    s = CallSession("C13")
    for text in ["您好，国家电网95598", "我家停电了", "请您提供户号", "户号是123456", "好的马上派人", "谢谢"]:
        engine.process(s, "agent" if text.startswith(("您好", "请", "好的马")) else "customer", text)
    state = s.to_state()
    copy = CallSession.from_state(state)
    assert copy.to_state() == state
    assert len(pickle.dumps(state)) < 50_000


def test_shared_sqlite_sessions_detect_concurrent_updates(retriever, signals, tmp_path: Path) -> None:
    from assist.sessions_sqlite import SqliteSessionStore

    engine = make(retriever, signals)
    store = SqliteSessionStore(tmp_path / "sessions.sqlite", max_sessions=2, ttl_s=60)
    other = SqliteSessionStore(tmp_path / "sessions.sqlite", max_sessions=2, ttl_s=60)  # a second worker
    _, created = store.get_or_create("S1")
    assert created
    a, b = store.get("S1"), other.get("S1")
    engine.process(a, "customer", "我家停电了")
    engine.process(b, "customer", "这个月电费怎么这么多")
    assert store.commit(a, 0) is True
    assert other.commit(b, 0) is False  # b was based on a stale version: the caller re-runs the turn
    fresh = other.get("S1")
    assert fresh.n_turns == 1 and fresh.turns == [("customer", "我家停电了")]
    store.get_or_create("S2")
    store.get_or_create("S3")  # over max_sessions: the least recently seen call goes
    assert len(store) == 2 and store.get("S1") is None
    assert store.end("S3") is not None and store.get("S3") is None


def test_concurrent_turns_on_one_call_are_serialised(retriever, signals) -> None:
    import threading

    engine = make(retriever, signals)
    store = SessionStore()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                s, _ = store.get_or_create("busy")
                engine.process(s, "customer" if i % 2 else "agent", f"我家停电了{n}-{i}")
                t, _ = store.get_or_create(f"own-{n}")
                engine.process(t, "customer", "这个月电费怎么这么多")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    busy = store.get("busy")
    assert busy is not None and busy.n_turns == 200 and busy.version == 200 and len(busy.turns) == 200
    assert all(store.get(f"own-{n}").n_turns == 25 for n in range(8))


class StubFeedback:
    """Adjustments as a trainer's feedback would give them; records events."""

    def __init__(self, adjust: dict[str, float]) -> None:
        self.adjust = adjust
        self.events: list[tuple[str, str]] = []

    def record(self, call_id, script_id, action, *, source="agent", score=None, scenario="") -> None:
        self.events.append((script_id, action))

    def adjustment(self, script_id: str) -> float:
        return self.adjust.get(script_id, 0.0)


class StaticRetriever:
    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.by_id = {s.id: s for s in bundled_scripts()}

    def search(self, text: str, k: int = 5) -> list[Hit]:
        hits = [Hit(id=i, scenario=self.by_id[i].scenario, script=self.by_id[i].script, score=v)
                for i, v in self.scores.items()]
        return sorted(hits, key=lambda h: h.score, reverse=True)[:k]


def test_feedback_reorders_but_thresholds_use_the_calibrated_score(signals) -> None:
    retriever = StaticRetriever({"K0001": 0.62, "K0033": 0.55, "K0038": 0.30})
    plain = make(retriever, signals).process(CallSession("F0"), "customer", "我家停电了是不是欠费")
    assert [s.id for s in plain.suggestions] == ["K0001", "K0033"]
    stub = StubFeedback({"K0001": -0.1, "K0033": 0.1, "K0038": 0.1})
    r = make(retriever, signals, feedback=stub).process(CallSession("F1"), "customer", "我家停电了是不是欠费")
    assert [s.id for s in r.suggestions] == ["K0033", "K0001"]  # K0038 stays below the 0.35 threshold
    assert r.suggestions[0].score == pytest.approx(0.65) and r.suggestions[0].base_score == pytest.approx(0.55)
    assert ("K0033", "shown") in stub.events


def test_fatal_taboo_goes_to_the_supervisors(retriever, signals) -> None:
    bus = MemoryAlertBus()
    engine = make(retriever, signals, alerts=bus)
    s = CallSession("T1")
    r = engine.process(s, "agent", "有本事你去投诉啊")
    alert = next(a for a in r.alerts if a.type == "taboo")
    assert alert.severity == "critical"
    assert bus.since(0)[0]["type"] == "taboo" and bus.since(0)[0]["call_id"] == "T1"
    engine.process(s, "agent", "说了多少遍了")  # serious, not fatal: the agent only
    assert len(bus.since(0)) == 1


def test_feedback_report_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from assist.cli import app

    store = FeedbackStore(tmp_path / "fb.sqlite")
    for action in ("shown", "shown", "accepted", "dismissed"):
        store.record("C1", "K0038", action, scenario="电费突然增高")
    store.flush()
    store.close()
    result = CliRunner().invoke(app, ["feedback", "--db", str(tmp_path / "fb.sqlite")])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("K0038"))
    assert "电费突然增高" in line and "50%" in line
    missing = CliRunner().invoke(app, ["feedback", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code != 0


def test_long_calls_stay_small(retriever, signals) -> None:
    import pickle

    engine = make(retriever, signals)
    s = CallSession("LONG")
    for i in range(400):
        engine.process(s, "customer" if i % 2 else "agent", f"第{i}句，" + "我家停电了请尽快派人来处理" * 20)
    assert s.n_turns == 400 and len(s.turns) < 400
    assert sum(len(t) for _, t in s.turns) <= 6000
    assert len(pickle.dumps(s.to_state())) < 50_000
