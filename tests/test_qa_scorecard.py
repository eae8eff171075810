"""Scorecards: the bundled default, validation errors that name the item and field, `kefu qa rules`."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from qa_inspect.rules import ScorecardError
from qa_inspect.scorecard import default_scorecard_path, load_scorecard, parse_scorecard

DEFAULT = yaml.safe_load(default_scorecard_path().read_text(encoding="utf-8"))


def test_default_scorecard_loads_with_95598_dimensions() -> None:
    sc = load_scorecard()
    assert set(sc.dimensions) == {"courtesy", "empathy", "professional_knowledge", "answering_skill"}
    assert sc.total_points == 100
    assert any(i.fatal for i in sc.items) and any(i.needs_review for i in sc.items)
    types = {i.raw_rule.get("type", next(iter(i.raw_rule))) for i in sc.items}
    assert {"taboo_lexicon", "must_say", "anchor_response", "silence", "model", "all"} <= types


def broken(mutate) -> dict:
    raw = copy.deepcopy(DEFAULT)
    mutate(raw)
    return raw


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["items"][1].update(dimension="tangible"), "items[1] (taboo_serious).dimension"),
        (lambda r: r["items"][0].pop("deduction"), "items[0] (taboo_fatal).deduction: is required"),
        (lambda r: r["items"][2].update(deduction="five"), "items[2] (taboo_minor).deduction: must be a number"),
        (lambda r: r["items"][0].update(fatal="yes"), "items[0] (taboo_fatal).fatal: must be true or false"),
        (lambda r: r["items"][3].update(id="taboo_fatal"), "items[3] (taboo_fatal).id: duplicate id"),
        (
            lambda r: r["items"][0].update(rule={"type": "lexicon"}),
            "items[0] (taboo_fatal).rule.type: unknown rule type 'lexicon'",
        ),
        (
            lambda r: r["items"][0].update(rule={"type": "taboo_lexicon", "min_severity": 4}),
            "rule.min_severity: must be <= 3",
        ),
        (
            lambda r: r["items"][0].update(rule={"type": "regex", "patterns": ["(未闭合"]}),
            "items[0] (taboo_fatal).rule.patterns[0]: bad regular expression",
        ),
        (
            lambda r: r["items"][0].update(rule={"all": [{"type": "phrases", "kind": "nonsense"}]}),
            "items[0] (taboo_fatal).rule.all[0].kind: unknown phrase kind 'nonsense'",
        ),
        (
            lambda r: r["items"][0].update(
                rule={"type": "anchor_response", "response": {"type": "phrases", "kind": "empathy"}}
            ),
            "rule.anchor: is required",
        ),
        (lambda r: r["items"][0].update(rule={"type": "silence", "max_sec": 5}), "unknown field(s) max_sec"),
        (lambda r: r["items"][0].update(colour="red"), "items[0] (taboo_fatal): unknown field(s) colour"),
        (lambda r: r["dimensions"]["courtesy"].update(points=-1), "dimensions.courtesy.points"),
        (lambda r: r.update(items=[]), "items must be a non-empty list"),
    ],
)
def test_validation_errors_name_item_and_field(mutate, expected: str) -> None:
    with pytest.raises(ScorecardError) as err:
        parse_scorecard(broken(mutate), "card.yaml")
    assert expected in str(err.value)
    assert str(err.value).startswith("card.yaml")


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nitems: [\n  - {id: a\n", encoding="utf-8")
    with pytest.raises(ScorecardError, match=r"bad.yaml:\d+: not valid YAML"):
        load_scorecard(bad)


def test_rules_command_lists_and_explains(cli) -> None:
    listing = cli("qa", "rules")
    assert listing.code == 0 and "taboo_fatal" in listing.out and "FATAL" in listing.out
    explain = cli("qa", "rules", "no_apology_after_complaint")
    assert explain.code == 0 and "within the next 2 agent turn" in explain.out
    types = cli("qa", "rules", "--types")
    assert "anchor_response" in types.out and "speech_rate" in types.out


def test_rules_command_reports_a_bad_scorecard_in_one_line(cli, tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(
        yaml.safe_dump(broken(lambda r: r["items"][4].update(deduction=-2)), allow_unicode=True), encoding="utf-8"
    )
    result = cli("qa", "rules", "--scorecard", str(card))
    assert result.code == 2
    assert "items[4] (opening_missing).deduction: must be >= 0" in result.err


def test_check_command_shows_hits_and_cancellations(cli) -> None:
    rude = cli("qa", "check", "说了多少遍了，你自己不会看吗")
    assert rude.code == 0 and rude.out.startswith("TABOO") and "不耐烦" in rude.out
    polite = cli("qa", "check", "不知道您现在方便吗？")
    assert polite.out.startswith("ok") and "cancelled by E001" in polite.out
