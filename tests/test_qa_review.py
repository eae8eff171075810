"""`kefu qa review`: the review store end to end, calibration numbers, training export and script links."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import typer

from kefu.io import KefuError
from knowledge_base.schema import Hit
from qa_inspect.review.calibration import calibration, cohen_kappa, pearson, wilson_interval
from qa_inspect.review.export import reviewed_turns
from qa_inspect.review.links import link_hits, query_for_hit
from qa_inspect.review.store import ReviewError, ReviewStore
from tests.test_qa_report import SCORED, TRANSCRIPTS, run, write_scored


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    scored = write_scored(tmp_path / "out.jsonl")
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in TRANSCRIPTS), encoding="utf-8")
    return {"scored": scored, "calls": calls, "db": tmp_path / "review.sqlite"}


@pytest.fixture()
def store(files: dict[str, Path]) -> ReviewStore:
    s = ReviewStore(files["db"])
    s.load(files["scored"], files["calls"], actor="tester")
    yield s
    s.close()


def _reviewed(store: ReviewStore) -> None:
    """The calibration fixture: verdicts on four hits, three manual scores."""
    store.verdict("C002", 1, True, "王质检")
    store.verdict("C002", 2, False, "王质检", "客户确实问了多次，属正常提醒")
    store.verdict("C002", 3, True, "王质检")
    store.verdict("C003", "taboo_fatal", True, "王质检")
    store.manual_score("C002", 60, "王质检")
    store.manual_score("C003", 0, "王质检")
    store.manual_score("C004", 92, "王质检")


def test_load_picks_sampled_calls_and_is_idempotent(files: dict[str, Path]) -> None:
    with ReviewStore(files["db"]) as s:
        first = s.load(files["scored"], files["calls"])
        assert (first.calls_new, first.not_sampled, first.errors, first.transcripts) == (3, 1, 2, 3)
        s.verdict("C002", 1, True, "王质检")
        again = s.load(files["scored"], files["calls"])
        assert (again.calls_new, again.calls_updated, again.hits_new, again.hits_retired) == (0, 0, 0, 0)
        assert [h["verdict"] for h in s.hits("C002")] == [True, None, None]
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Re-scored with one taboo hit gone: that hit retires, the confirmed one keeps its verdict.
    rescored = [dict(r) for r in SCORED]
    rescored[1] = {
        **rescored[1],
        "rule_hits": rescored[1]["rule_hits"][:1],
        "taboo": rescored[1]["taboo"][:1],
        "score": 70.0,
    }
    with ReviewStore(files["db"]) as s:
        third = s.load(write_scored(files["scored"].with_name("out2.jsonl"), rescored))
        assert (third.calls_updated, third.hits_retired) == (1, 2)
        hits = s.hits("C002")
        assert [(h["ordinal"], h["verdict"]) for h in hits] == [(1, True)]
        assert s.call("C002")["score"] == 70.0


def test_calls_loaded_without_sampling_are_not_in_the_review_queue(files: dict[str, Path]) -> None:
    """The console loads every scored call; the ones sampling did not pick are not pending review."""
    with ReviewStore(files["db"]) as s:
        summary = s.load(files["scored"], files["calls"], all_calls=True)
        assert summary.not_sampled == 0 and summary.calls_new == 4
        statuses = {r["call_id"]: r["status"] for r in s.queue()}
        assert sorted(st for st in statuses.values()) == ["not_sampled", "pending", "pending", "pending"]
        skipped = next(c for c, st in statuses.items() if st == "not_sampled")
        assert skipped not in {r["call_id"] for r in s.queue(status="pending")}
        s.manual_score(skipped, 88, "王质检")  # reviewed anyway: it enters the workflow
        assert s.call(skipped)["status"] == "in_review"


def test_hits_are_numbered_classified_and_deduplicated(store: ReviewStore) -> None:
    hits = store.hits("C002")
    assert [(h["ordinal"], h["rule"], h["kind"], h["turn"]) for h in hits] == [
        (1, "taboo_serious", "taboo", 2),
        (2, "taboo_serious", "taboo", 2),
        (3, "no_apology_after_complaint", "missing", 3),
    ]  # the taboo list repeats the rule hits: not loaded twice
    assert store.call("C003")["turns"][1]["text"] == "你去投诉啊"


def test_review_actions_validate_their_input(store: ReviewStore) -> None:
    with pytest.raises(ReviewError, match="2 hits of rule 'taboo_serious'"):
        store.verdict("C002", "taboo_serious", True, "x")
    with pytest.raises(ReviewError, match="no hit #9"):
        store.verdict("C002", 9, True, "x")
    with pytest.raises(ReviewError, match="not in the review store"):
        store.manual_score("C999", 80, "x")
    with pytest.raises(ReviewError, match="between 0 and 100"):
        store.manual_score("C002", 120, "x")
    with pytest.raises(ReviewError, match="adjusted needs the new score"):
        store.decide("C002", "adjusted", "x")
    with pytest.raises(ReviewError, match="applies to agent turns"):
        store.label_turn("C002", 3, "taboo", True, "x")


def test_appeal_and_decision_flow(store: ReviewStore) -> None:
    _reviewed(store)
    assert store.queue(status="reviewed")[0]["call_id"] == "C003"
    appeal_id = store.appeal("C003", "客户先辱骂坐席，录音可证", "A03")
    assert store.call("C003")["status"] == "appealed"
    decision = store.decide("C003", "adjusted", "李组长", final_score=40, note="情有可原，改为严重忌语")
    assert decision == {"call_id": "C003", "outcome": "adjusted", "final_score": 40, "appeal_id": appeal_id}
    call = store.call("C003")
    assert call["status"] == "decided" and call["appeals"][0]["status"] == "decided"
    actions = [a["action"] for a in store.audit_log("C003")]
    assert actions == ["verdict", "score", "appeal", "decide"]


def test_statistics_helpers_on_known_values() -> None:
    low, high = wilson_interval(3, 4)
    assert (round(low, 4), round(high, 4)) == (0.3006, 0.9544)
    assert wilson_interval(0, 0) is None
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 1], [2, 3]) is None
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    assert cohen_kappa([0, 1, 0], [0, 1, 1]) == pytest.approx(0.4)
    assert cohen_kappa([1, 1], [1, 1]) is None


def test_calibration_on_a_known_fixture(store: ReviewStore) -> None:
    _reviewed(store)
    report = calibration(store)
    rules = {r["rule"]: r for r in report["rules"]}
    assert (rules["taboo_serious"]["verdicts"], rules["taboo_serious"]["true"]) == (2, 1)
    assert rules["taboo_serious"]["precision"] == 0.5
    assert (rules["taboo_serious"]["ci_low"], rules["taboo_serious"]["ci_high"]) == (0.0945, 0.9055)
    assert rules["taboo_fatal"]["precision"] == 1.0 and rules["taboo_fatal"]["ci_low"] == 0.2065
    phrases = {r["phrase"]: r["precision"] for r in report["phrases"]}
    assert phrases == {"T010 说了多少遍了": 1.0, "T030 你自己不会看": 0.0, "T100 你去投诉啊": 1.0}
    a = report["agreement"]
    machine, human = [50.0, 0.0, 88.0], [60.0, 0.0, 92.0]
    mx, my = sum(machine) / 3, sum(human) / 3
    r = sum((x - mx) * (y - my) for x, y in zip(machine, human, strict=True)) / math.sqrt(
        sum((x - mx) ** 2 for x in machine) * sum((y - my) ** 2 for y in human)
    )
    assert a["calls"] == 3 and a["pearson_r"] == round(r, 4)
    assert a["mean_abs_diff"] == 4.67 and a["mean_diff_human_minus_machine"] == 4.67
    assert a["band_agreement"] == 0.3333 and a["band_kappa"] == 0.1429  # 不合格/良好 vs 合格/优秀
    assert a["fatal_calls"] == 3 and a["fatal_kappa"] == 1.0
    store.manual_score("C004", 92, "王质检", fatal=True)  # the reviewer finds a fatal item the machine missed
    assert calibration(store)["agreement"]["fatal_kappa"] == 0.4


def test_export_is_masked_and_readable_by_training(store: ReviewStore, tmp_path: Path) -> None:
    _reviewed(store)
    store.label_turn("C002", 1, "risk", False, "王质检")
    rows, summary = reviewed_turns(store)
    by_turn = {(r["call_id"], r["turn"]): r for r in rows}
    assert by_turn[("C002", 2)]["labels"] == {"taboo": 1}  # one confirmed hit is enough
    assert by_turn[("C003", 1)] == {"call_id": "C003", "turn": 1, "role": "agent", "text": "你去投诉啊",
                                    "labels": {"taboo": 1}, "source": "review"}  # fmt: skip
    assert "[户号]" in by_turn[("C002", 1)]["text"] and "1234567890" not in by_turn[("C002", 1)]["text"]
    assert summary.turns == 3
    raw, _ = reviewed_turns(store, mask=False)
    assert any("1234567890" in r["text"] for r in raw)
    with_neg, _ = reviewed_turns(store, negatives=True)
    assert {(r["call_id"], r["turn"]): r["labels"] for r in with_neg}[("C002", 0)] == {"taboo": 0}

    from training.datasets import read_turns

    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    examples = read_turns(path)
    assert [(e.role, e.labels) for e in examples] == [("customer", {"risk": 0}), ("agent", {"taboo": 1}),
                                                      ("agent", {"taboo": 1})]  # fmt: skip


class FakeRetriever:
    """Answers outage texts with the outage script; anything else only weakly."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, text: str, k: int = 5) -> list[Hit]:
        self.queries.append(text)
        if "停电" in text:
            return [Hit("K001", "居民整户停电报修", "非常抱歉给您带来不便，抢修人员45分钟内到达。", 0.91)][:k]
        if "电费" in text:
            return [Hit("K020", "电费异常咨询", "我帮您查询一下电费明细。", 0.8)][:k]
        return [Hit("K099", "其他", "……", 0.1)][:k]


def test_links_point_taboo_hits_to_the_script_for_the_customer_need(store: ReviewStore) -> None:
    fake = FakeRetriever()
    summary = link_hits(store, fake, k=2)
    assert summary.hits == 5 and summary.linked == 5  # 3 taboo hits, the missing apology, no_time_limit
    c3 = store.hits("C003")[0]
    assert c3["links"][0]["script_id"] == "K001"  # the taboo answer to "停电三天" → the outage script
    assert store.hits("C002")[0]["links"][0]["script_id"] == "K020"
    assert [g["text"] for g in summary.gaps] == ["你这什么态度 我要投诉你", "充电桩报装需要什么材料"]


def test_query_for_a_hit_without_turns_uses_its_evidence() -> None:
    assert query_for_hit({"turn": 3, "text": "我要投诉你", "detail": {"anchor": "我要投诉你"}}, None) == "我要投诉你"
    turns = [{"role": "customer", "text": "家里没电了"}, {"role": "agent", "text": "你找别人去"}]
    assert query_for_hit({"turn": 1, "text": "你找别人去", "detail": {}}, turns) == "家里没电了"


def test_cli_review_end_to_end(qa_app: typer.Typer, files: dict[str, Path], tmp_path: Path, monkeypatch: Any) -> None:
    db = ["--db", str(files["db"])]
    r = run(qa_app, "review", "load", str(files["scored"]), "--transcripts", str(files["calls"]), *db, "-r", "王质检")
    assert r.exit_code == 0, r.output
    assert "3 new" in r.output
    r = run(qa_app, "review", "queue", *db, "--json")
    assert [json.loads(x)["call_id"] for x in r.stdout.splitlines()] == ["C003", "C002", "C004"]
    r = run(qa_app, "review", "show", "C002", *db)
    assert "[户号]" in r.stdout and "1234567890" not in r.stdout and "#2 taboo_serious" in r.stdout
    assert run(qa_app, "review", "verdict", "C002", "1", "true", *db).exit_code == 0
    assert run(qa_app, "review", "verdict", "C002", "2", "误报", *db, "--note", "正常提醒").exit_code == 0
    assert run(qa_app, "review", "verdict", "C003", "taboo_fatal", "对", *db).exit_code == 0
    bad = run(qa_app, "review", "verdict", "C002", "1", "maybe", *db)
    assert isinstance(bad.exception, KefuError) and "true or false" in str(bad.exception)
    assert run(qa_app, "review", "score", "C002", "60", *db).exit_code == 0
    assert run(qa_app, "review", "score", "C003", "0", "--fatal", *db).exit_code == 0
    assert run(qa_app, "review", "appeal", "C003", "--reason", "客户先骂人", *db, "--by", "A03").exit_code == 0
    r = run(qa_app, "review", "decide", "C003", "--outcome", "upheld", *db)
    assert r.exit_code == 0 and "appeal #1 closed" in r.output
    r = run(qa_app, "review", "calibration", *db, "--json")
    report = json.loads(r.stdout)
    assert {x["rule"]: x["precision"] for x in report["rules"]} == {"taboo_serious": 0.5, "taboo_fatal": 1.0}
    r = run(qa_app, "review", "calibration", *db)
    assert "规则准确率" in r.stdout and "人机一致性" in r.stdout
    out = tmp_path / "extra.jsonl"
    r = run(qa_app, "review", "export", "-o", str(out), *db)
    assert r.exit_code == 0 and "2 reviewed turns" in r.output
    assert [json.loads(x)["labels"] for x in out.read_text(encoding="utf-8").splitlines()] == [{"taboo": 1}] * 2

    # Links: a clear error without a KB, then a fake index manager standing in for the real one.
    r = run(qa_app, "review", "links", "--kb", str(tmp_path / "nokb"), *db)
    assert isinstance(r.exception, KefuError) and "no knowledge base" in str(r.exception)
    kb = tmp_path / "kb"
    kb.mkdir()
    fake_module = types.ModuleType("knowledge_base.index.manager")

    class FakeManager:
        def __init__(self, kb_dir: Path) -> None:
            assert Path(kb_dir) == kb

        def retriever(self) -> FakeRetriever:
            return FakeRetriever()

    fake_module.IndexManager = FakeManager  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "knowledge_base.index.manager", fake_module)
    gaps = tmp_path / "gaps.jsonl"
    r = run(qa_app, "review", "links", "--kb", str(kb), "--gaps", str(gaps), *db)
    assert r.exit_code == 0, r.output
    assert "linked 5 of 5" in r.output
    assert "话术 K001" in run(qa_app, "review", "show", "C003", *db).stdout
    assert len(gaps.read_text(encoding="utf-8").splitlines()) == 2
    audit = [json.loads(x)["action"] for x in run(qa_app, "review", "audit", *db).stdout.splitlines()]
    assert audit[0] == "load" and "decide" in audit


def test_missing_or_broken_store_is_a_clear_error(qa_app: typer.Typer, tmp_path: Path) -> None:
    r = run(qa_app, "review", "queue", "--db", str(tmp_path / "none.sqlite"))
    assert isinstance(r.exception, KefuError) and "no review store" in str(r.exception)
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ReviewError, match="not a usable review store"):
        ReviewStore(broken)
