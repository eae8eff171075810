"""The shipped hand-written labelled calls: well-formed, labelled by the guide's rules, apart from the gold set."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.datasets import CONTRAST_PATH, DEV_PATH, DEV_PATHS, GOLD_PATH, read_calls, read_turns
from training.generator import TurnSample, call_labels

DEV_FILES = [p for p in DEV_PATHS if p.exists()]
TURN_LABELS = {"agent": {"taboo", "empathy"}, "customer": {"risk"}}


@pytest.mark.parametrize("path", DEV_FILES, ids=lambda p: p.name)
def test_every_turn_carries_its_roles_labels(path: Path) -> None:
    for call in read_calls(path):
        for j, turn in enumerate(call["turns"]):
            where = f"{path.name} {call['call_id']} turn {j}"
            assert turn["role"] in TURN_LABELS, where
            assert set(turn["labels"]) == TURN_LABELS[turn["role"]], where
            assert set(turn["labels"].values()) <= {0, 1}, where
            assert turn["text"].strip(), where


@pytest.mark.parametrize("path", DEV_FILES, ids=lambda p: p.name)
def test_call_labels_follow_from_the_turn_labels(path: Path) -> None:
    for call in read_calls(path):
        want = call_labels([TurnSample(t["role"], t["text"], t["labels"], "", "", "") for t in call["turns"]])
        assert call["labels"]["complaint_risk"] == want["complaint_risk"], call["call_id"]
        if path != DEV_PATH:  # dev_calls.jsonl predates the guide's call-empathy rule (docs/labelling.md)
            assert call["labels"]["empathy"] == want["empathy"], call["call_id"]


def test_call_ids_are_unique_across_the_hand_written_sets() -> None:
    ids = [c["call_id"] for p in DEV_FILES for c in read_calls(p)]
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(not GOLD_PATH.exists(), reason="no gold set in this checkout")
def test_no_training_call_repeats_a_gold_turn_beyond_stock_phrases() -> None:
    """The gold set is evaluation only: no dev turn may copy one of its turns (opening and closing formulas aside)."""
    gold = {t["text"] for c in read_calls(GOLD_PATH) for t in c["turns"]}
    stock = ("感谢您的来电", "感谢您的理解", "感谢您的咨询", "感谢您的反馈", "请提供一下您的户号",
             "有什么可以帮您")  # the standard greeting: "您好，(网上国网在线客服，)请问有什么可以帮您"
    copied = [t["text"] for p in DEV_FILES for c in read_calls(p) for t in c["turns"]
              if t["text"] in gold and len(t["text"]) > 10 and not any(s in t["text"] for s in stock)]
    assert copied == []


@pytest.mark.skipif(not CONTRAST_PATH.exists(), reason="no contrast turns in this checkout")
def test_contrast_groups_pair_taboo_with_acceptable_turns_and_copy_no_gold_turn() -> None:
    """Each contrast group teaches a difference: at least one taboo turn and one acceptable turn, agent turns only,
    both labels on every turn, no text twice, nothing copied from the evaluation-only gold set."""
    turns = read_turns(CONTRAST_PATH)
    groups: dict[str, list[int]] = {}
    for t in turns:
        assert t.role == "agent" and set(t.labels) == {"taboo", "empathy"}, t.source
        assert t.group, f"{t.source}: no group"
        groups.setdefault(t.group, []).append(t.labels["taboo"])
    assert len(groups) >= 500
    assert all(0 < sum(v) < len(v) for v in groups.values()), [g for g, v in groups.items() if not 0 < sum(v) < len(v)]
    assert len({t.text for t in turns}) == len(turns)
    if GOLD_PATH.exists():
        gold = {t["text"] for c in read_calls(GOLD_PATH) for t in c["turns"]}
        assert not [t.text for t in turns if t.text in gold]
