"""Quality-inspection rules: taboo lexicon with exceptions, rule types, windows, timing, composition."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kefu.schemas import parse_transcript
from qa_inspect.lexicon import data_path, get_resources
from qa_inspect.rules import Context, build_rule
from tests.qa_fakes import FakeClassifier

with open(data_path("taboo_examples.csv"), encoding="utf-8") as _fh:
    EXAMPLES = list(csv.DictReader(_fh))


def call(*turns: tuple, **extra) -> object:
    """A transcript from (role, text) or (role, text, start, end) tuples."""
    raw = {"call_id": extra.pop("call_id", "T1"), **extra, "turns": []}
    for t in turns:
        turn = {"role": t[0], "text": t[1]}
        if len(t) == 4:
            turn["start"], turn["end"] = t[2], t[3]
        raw["turns"].append(turn)
    transcript, problems = parse_transcript(raw)
    assert transcript is not None, problems
    return transcript


def run(spec: dict, transcript, scores=None) -> tuple[list, Context]:
    resources = get_resources()
    rule = build_rule(spec, "test.rule", resources)
    ctx = Context(transcript, resources, scores)
    return rule.check(transcript, ctx), ctx


@pytest.fixture(scope="session")
def matcher():
    return get_resources().taboo


def test_bundled_lexicon_is_large_and_categorised() -> None:
    entries = get_resources().taboo_entries
    assert len(entries) >= 200
    assert {e.severity for e in entries} == {1, 2, 3}
    assert len({e.category for e in entries}) >= 5


@pytest.mark.parametrize(
    "row", EXAMPLES, ids=[f"{r['phrase_id']}-{r['expected_taboo']}-{n}" for n, r in enumerate(EXAMPLES)]
)
def test_taboo_examples(matcher, row: dict) -> None:
    hits = matcher.match(row["text"])
    active = [h for h in hits if h.active]
    if row["expected_taboo"] == "1":
        assert any(h.entry.id == row["phrase_id"] for h in active), [(h.entry.id, h.cancelled_by) for h in hits]
    else:
        assert not active, [(h.entry.id, h.text) for h in active]
        assert any(h.entry.id == row["phrase_id"] for h in hits), "the listed phrase should be found, then cancelled"


@pytest.mark.parametrize(
    "text",
    ["你 去 投 诉 啊", "你去，投诉啊！", "你去投訴啊", "你去嗯投诉啊", "你去投诉　啊"],
)
def test_matching_tolerates_spaces_punctuation_fillers_and_traditional(matcher, text: str) -> None:
    hits = [h for h in matcher.match(text) if h.active]
    assert [h.entry.phrase for h in hits] == ["你去投诉啊"]
    # the span indexes the original text (啊 is an ASR filler, stripped from phrase and text alike)
    assert text[hits[0].start] == "你" and text[hits[0].end - 1] in "诉訴"


def test_polite_sentence_is_cancelled_but_rude_one_is_not(matcher) -> None:
    polite = matcher.match("不知道您现在方便接听电话吗？")
    assert polite and all(h.cancelled_by for h in polite)
    rude = matcher.match("不知道，你问别人吧。")
    assert any(h.active and h.entry.phrase == "不知道" for h in rude)


def test_nested_phrase_keeps_the_longer_one(matcher) -> None:
    hits = [h for h in matcher.match("这是规定就不行") if h.active]
    assert [h.entry.phrase for h in hits] == ["这是规定就不行"]


def test_taboo_rule_only_looks_at_agent_turns_and_carries_evidence() -> None:
    t = call(("customer", "你有病吧"), ("agent", "您好，请讲。"), ("agent", "说了多少遍了，快点说"))
    hits, _ = run({"type": "taboo_lexicon"}, t)
    assert [(h.turn, h.text) for h in hits] == [(2, "说了多少遍了"), (2, "快点说")]
    assert all(h.source == "lexicon" and h.span and h.detail["category"] for h in hits)
    fatal, _ = run({"type": "taboo_lexicon", "min_severity": 3}, t)
    assert fatal == []


def test_regex_rule_with_exception() -> None:
    spec = {"type": "regex", "role": "agent", "patterns": ["没办法"], "exceptions": ["抱歉.{0,6}没办法"]}
    hits, _ = run(spec, call(("agent", "这个没办法。"), ("agent", "很抱歉，现在没办法查到。")))
    assert [h.turn for h in hits] == [0]
    assert hits[0].source == "regex" and hits[0].span == (2, 5)


def test_must_say_opening_and_closing() -> None:
    good = call(("agent", "您好，国家电网95598，工号1024。"), ("customer", "没电了"), ("agent", "感谢您的来电，再见。"))
    bad = call(("agent", "喂，说吧。"), ("customer", "没电了"), ("agent", "行。"))
    opening = {"type": "must_say", "kind": "opening", "first": 1}
    closing = {"type": "must_say", "kind": "closing", "last": 1}
    assert run(opening, good)[0] == [] and run(closing, good)[0] == []
    missing, _ = run(opening, bad)
    assert len(missing) == 1 and missing[0].turn == 0 and missing[0].detail["missing"]
    assert run(closing, bad)[0][0].turn == 2


def test_opening_only_counts_in_the_first_agent_turn() -> None:
    late = call(("agent", "喂？"), ("customer", "喂"), ("agent", "您好，国家电网95598"))
    assert run({"type": "must_say", "kind": "opening", "first": 1}, late)[0]
    assert not run({"type": "must_say", "kind": "opening", "first": 2}, late)[0]


ANCHOR = {
    "type": "anchor_response",
    "within": 2,
    "anchor": {
        "type": "phrases",
        "kind": "complaint_trigger",
        "role": "customer",
        "cancel_kind": "de_escalation_negation",
    },
    "response": {"type": "phrases", "kind": "empathy", "role": "agent"},
}


def test_anchor_window_no_apology_within_two_agent_turns() -> None:
    t = call(
        ("customer", "都第三次打了，我要投诉"),
        ("agent", "请提供户号。"),
        ("customer", "1234"),
        ("agent", "已登记。"),
        ("agent", "非常抱歉给您带来不便。"),
    )
    hits, _ = run(ANCHOR, t)
    assert [h.turn for h in hits] == [0]
    assert hits[0].detail["window_turns"] == [1, 3]


def test_anchor_window_satisfied_by_an_apology() -> None:
    t = call(("customer", "我要投诉"), ("agent", "请稍等。"), ("agent", "非常抱歉，让您久等了。"))
    assert run(ANCHOR, t)[0] == []


def test_de_escalation_cancels_the_anchor() -> None:
    t = call(("customer", "我不是要投诉，就问问电费"), ("agent", "好的，请讲。"), ("agent", "已查到。"))
    assert run(ANCHOR, t)[0] == []


def test_repetition_of_the_same_demand() -> None:
    t = call(
        ("customer", "我要求今天必须派人来修"),
        ("agent", "已经登记了"),
        ("customer", "我就要求今天必须派人来修好"),
        ("agent", "会尽快"),
        ("customer", "我再说一遍，今天必须派人来修"),
    )
    hits, _ = run({"type": "repetition", "min_count": 3}, t)
    assert [h.turn for h in hits] == [0, 2, 4]
    two = call(
        ("customer", "我要求今天必须派人来修"), ("customer", "我要求今天必须派人来修"), ("customer", "好的谢谢您啦")
    )
    assert run({"type": "repetition", "min_count": 3}, two)[0] == []


TIMED = call(
    ("agent", "您好，国家电网95598。", 0.0, 2.0),
    ("customer", "我家停电了，一直没人来修", 2.5, 6.0),
    ("agent", "您说的是哪个小区", 5.0, 7.0),  # starts 1 s before the customer finished
    ("customer", "城南小区", 7.5, 8.5),
    ("agent", "好的。", 25.0, 25.5),  # 16.5 s of dead air
)


def test_silence_and_overtalk_with_timestamps() -> None:
    silence, _ = run({"type": "silence", "max_s": 10, "role": "agent"}, TIMED)
    assert [(h.turn, h.detail["gap_s"]) for h in silence] == [(4, 16.5)]
    assert silence[0].source == "timing"
    over, _ = run({"type": "overtalk", "role": "agent", "min_overlap_s": 1.0}, TIMED)
    assert [h.turn for h in over] == [2]
    assert run({"type": "duration", "max_s": 20}, TIMED)[0][0].detail["duration_s"] == 25.5
    fast, _ = run({"type": "speech_rate", "max_cps": 3.0, "min_turn_s": 1.5}, TIMED)
    assert fast and fast[0].detail["too"] == "fast"


def test_silence_after_a_hold_notice_is_allowed() -> None:
    t = call(
        ("agent", "我帮您查询一下，请您稍等。", 0.0, 2.0),
        ("customer", "好", 2.2, 2.5),
        ("agent", "让您久等了", 30.0, 31.0),
    )
    assert run({"type": "silence", "max_s": 10, "hold_max_s": 60}, t)[0] == []
    t2 = call(("agent", "好的。", 0.0, 2.0), ("agent", "查到了", 30.0, 31.0))
    assert run({"type": "silence", "max_s": 10}, t2)[0]


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "silence"},
        {"type": "overtalk"},
        {"type": "speech_rate", "max_cps": 1},
        {"type": "duration", "max_s": 1},
    ],
)
def test_timing_rules_are_skipped_without_timestamps(spec: dict) -> None:
    hits, ctx = run(spec, call(("agent", "您好"), ("customer", "停电了")))
    assert hits == [] and spec["type"] in ctx.skipped


def test_model_rules_use_the_classifier_and_skip_without_it() -> None:
    t = call(("customer", "我要投诉"), ("agent", "你别墨迹了"))
    scores = FakeClassifier().predict_calls([t])[0]
    taboo, _ = run({"type": "model", "label": "taboo", "threshold": 0.8}, t, scores)
    assert [(h.turn, h.source) for h in taboo] == [(1, "model")] and taboo[0].detail["prob"] == 0.95
    risk, _ = run({"type": "model", "label": "complaint_risk", "threshold": 0.8}, t, scores)
    assert len(risk) == 1 and risk[0].turn is None
    low, _ = run({"type": "model", "label": "empathy", "op": "<", "threshold": 0.3}, t, scores)
    assert len(low) == 1
    none, ctx = run({"type": "model", "label": "taboo", "threshold": 0.8}, t)
    assert none == [] and "model" in ctx.skipped
    listed = call(("agent", "磨磨唧唧的，你去投诉啊"), ("agent", "你别墨迹了"))
    scores = FakeClassifier().predict_calls([listed])[0]
    only, _ = run({"type": "model", "label": "taboo", "threshold": 0.8, "unlisted_only": True}, listed, scores)
    assert [h.turn for h in only] == [1]


def test_composition_all_any_not() -> None:
    t = call(("customer", "停电了"), ("agent", "好的，已登记。"))
    outage = {"type": "regex", "role": "customer", "patterns": ["停电"]}
    limit = {"type": "regex", "role": "agent", "patterns": [r"\d+分钟内"]}
    hits, _ = run({"all": [outage, {"not": limit}]}, t)
    assert {h.type for h in hits} == {"regex", "not"}
    assert run({"any": [limit, {"type": "regex", "patterns": ["登记"]}]}, t)[0][0].turn == 1
    t2 = call(("customer", "停电了"), ("agent", "抢修人员45分钟内到达。"))
    assert run({"all": [outage, {"not": limit}]}, t2)[0] == []


def test_custom_lexicon_files(tmp_path: Path) -> None:
    lex = tmp_path / "lex.csv"
    lex.write_text("id,phrase,category,severity,note\nX1,慢死了,不耐烦,2,\n", encoding="utf-8")
    exc = tmp_path / "exc.csv"
    exc.write_text("id,phrase_id,pattern,note\n", encoding="utf-8")
    res = get_resources(str(lex), str(exc), None)
    assert [h.entry.id for h in res.taboo.match("你慢死了")] == ["X1"]


def test_fast_normalisation_is_kefu_normalisation() -> None:
    """The map-free normalize used on the scoring hot path gives exactly normalize_with_map's text."""
    from kefu.text import normalize, normalize_with_map

    texts = [r["text"] for r in EXAMPLES] + ["喂 嗯 你好 國家電網 ９５５９８ 額度 额 那个那个", "ＡＢＣ，ｄｅｆ！　呃"]
    assert [normalize(t) for t in texts] == [normalize_with_map(t)[0] for t in texts]
