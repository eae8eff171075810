"""The dialogue generator and datasets: pattern-disjoint splits, balance, noise, hard negatives, loaders."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from kefu.io import InputError
from training.datasets import generate, in_lexicon, load_stc3, read_calls, read_turns
from training.generator import (
    Generator,
    TurnSample,
    add_asr_noise,
    call_labels,
    expand,
    load_inventory,
    load_script_sentences,
    load_topics,
    snippet,
    split_patterns,
)


@pytest.fixture(scope="module")
def inventory():
    return load_inventory()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    generate(out, n_turns=800, n_calls=60, seed=5, quiet=True)
    return out


def test_inventory_has_many_patterns_per_label_family(inventory) -> None:
    counts = Counter(p.family for p in inventory.patterns)
    # The bar: at least 300 distinct patterns per label family.
    assert counts["taboo"] >= 300 and counts["empathy"] >= 300 and counts["risk"] >= 300
    # Every taboo category of the issue is covered.
    groups = {p.group for p in inventory.patterns if p.family == "taboo"}
    assert {"推诿", "不耐烦", "指责", "轻视", "挑衅", "生硬拒绝"} <= groups


def test_expansion_leaves_no_template_syntax(inventory) -> None:
    rng = random.Random(0)
    for p in inventory.patterns:
        text = expand(p.template, rng, inventory.slots)
        assert not re.search(r"[()<>|]", text), (p.source, text)


def test_split_is_by_pattern_and_stable(inventory) -> None:
    a = split_patterns(inventory, seed=3)
    assert a == split_patterns(inventory, seed=3)
    assert set(a.values()) == {"train", "val", "test"}
    # Every taboo category has wording that only the test split sees.
    test_groups = {p.group for p in inventory.patterns if p.family == "taboo" and a[p.id] == "test"}
    assert {"推诿", "不耐烦", "指责", "轻视", "挑衅", "生硬拒绝"} <= test_groups


def test_generated_test_turns_use_only_test_patterns(small_data: Path) -> None:
    manifest = json.loads((small_data / "manifest.json").read_text(encoding="utf-8"))
    split_of = manifest["pattern_split"]
    for split in ("train", "test"):
        for t in read_turns(small_data / f"turns_{split}.jsonl"):
            if t.pattern in split_of:
                assert split_of[t.pattern] == split
    train = {t.pattern for t in read_turns(small_data / "turns_train.jsonl")}
    test = {t.pattern for t in read_turns(small_data / "turns_test.jsonl")}
    assert not (train & test) - {"kb"}


def test_labels_are_balanced_and_hard_negatives_present(small_data: Path) -> None:
    rows = [json.loads(line) for line in (small_data / "turns_train.jsonl").read_text(encoding="utf-8").splitlines()]
    agent = [r for r in rows if r["role"] == "agent"]
    customer = [r for r in rows if r["role"] == "customer"]
    taboo = sum(r["labels"].get("taboo", 0) for r in agent) / len(agent)
    empathy = sum(r["labels"].get("empathy", 0) for r in agent) / len(agent)
    risk = sum(r["labels"]["risk"] for r in customer) / len(customer)
    assert 0.15 < taboo < 0.45 and 0.15 < empathy < 0.45 and 0.3 < risk < 0.6
    hard = [r for r in rows if r["family"] == "hard_negative"]
    assert hard and all(r["labels"].get("taboo", 0) == 0 and r["labels"].get("risk", 0) == 0 for r in hard)
    # Polite sentences that contain listed taboo words are among the negatives.
    assert any(in_lexicon(r["text"]) for r in hard if r["role"] == "agent")


def test_calls_have_consistent_turn_and_call_labels(small_data: Path) -> None:
    calls = read_calls(small_data / "calls_train.jsonl")
    plans = Counter(c["plan"] for c in calls)
    assert len(plans) >= 5
    for c in calls:
        assert set(c["labels"]) == {"complaint_risk", "empathy", "taboo"}
        assert c["turns"][0]["role"] == "agent"


def test_call_label_rules() -> None:
    def t(role: str, **labels: int) -> TurnSample:
        return TurnSample(role, "x", labels, "p", "f", "g")

    calmed = [t("customer", risk=1), t("agent", taboo=0, empathy=1), t("customer", risk=0)]
    assert call_labels(calmed) == {"complaint_risk": 0, "empathy": 1, "taboo": 0}
    provoked = [t("customer", risk=1), t("agent", taboo=1, empathy=0), t("customer", risk=1)]
    assert call_labels(provoked) == {"complaint_risk": 1, "empathy": 0, "taboo": 1}
    ignored = [t("customer", risk=1), t("agent", taboo=0, empathy=0), t("customer", risk=0)]
    assert call_labels(ignored)["complaint_risk"] == 1


def test_asr_noise_strips_punctuation_and_adds_homophones() -> None:
    rng = random.Random(1)
    outs = [add_asr_noise("您好，这个月电费是三百元。", rng, 1.0) for _ in range(300)]
    assert any("，" not in o and "。" not in o for o in outs)
    assert any("点费" in o for o in outs)
    assert add_asr_noise("电费", rng, 0.0) == "电费"


def test_asr_noise_drops_characters_but_never_a_negation() -> None:
    # "我们不会当没听见" without 不 is a taboo labelled empathy: noise must not turn the meaning.
    rng = random.Random(2)
    text = "您提的这些困难我们不会当没听见，别担心，没有人会不管，未处理完之前绝不结单"
    outs = [add_asr_noise(text, rng, 1.5) for _ in range(400)]
    assert sum(len(o) < len(text) for o in outs) > 50  # characters do get dropped
    for o in outs:
        for ch in "不没别未":
            assert o.count(ch) >= text.count(ch), o


def test_apologies_are_empathy_cues_not_label_free_context() -> None:
    # An apology is empathy by the labelling guide, so an apology script sentence must never be used as
    # label-free context (it would label an apologising turn empathy 0, and teach that apologies cancel taboo).
    cues = load_inventory().slots["empathy_cues"]
    for sentence in ("抢修人员的服务让您不满意，我代表供电公司向您道歉。", "之前的服务让您不满意，我向您诚恳道歉。",
                     "我都会为您登记相应工单并跟踪到底，不会让您白等。"):
        assert any(c in sentence for c in cues), sentence


def test_extra_turns_reader_reports_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "extra.jsonl"
    good.write_text(
        json.dumps({"role": "坐席", "text": "你自己看着办吧", "labels": {"taboo": 1}}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    turns = read_turns(good)
    assert turns[0].role == "agent" and turns[0].labels == {"taboo": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"role": "agent", "text": "好的", "labels": {"taboo": 1}}\n'
                   '{"role": "agent", "text": "好的", "labels": {"risk": 1}}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:2: label 'risk' does not apply to agent"):
        read_turns(bad)


def test_stc3_loader_respects_split(tmp_path: Path) -> None:
    path = tmp_path / "stc.jsonl"
    rows = [{"call_id": f"s{i}", "split": "train" if i % 2 else "test", "turns": [{"role": "customer", "text": "差"}],
             "labels": {"dissatisfied": i % 2}} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert {r["split"] for r in load_stc3("train", path)} == {"train"}
    assert len(load_stc3("test", path)) == 3
    with pytest.raises(ValueError, match="split must be train or test"):
        load_stc3("all", path)


def test_labelled_cores_are_embedded_in_label_free_knowledge_base_context(inventory) -> None:
    scripts = load_script_sentences()
    if not scripts:
        pytest.skip("knowledge-base scripts not present")
    rng = random.Random(0)
    long = next(s for _, s in scripts if len(s) > 40)
    for _ in range(20):
        piece = snippet(long, rng)
        assert 0 < len(piece) <= 40 and piece in long  # whole clauses, short enough to keep the core in view
    split_of = split_patterns(inventory, seed=13)
    gen = Generator(inventory, split_of, "train", seed=13, noise=0.0, topics=load_topics(), scripts=scripts,
                    context=1.0)
    plain = gen.plain_scripts
    assert plain and all(not any(c in s for c in inventory.slots["empathy_cues"]) for s in plain)
    turns = [gen.turn("agent", "taboo") for _ in range(30)]
    # Every taboo turn now carries a procedural script clause, and keeps its taboo label.
    assert all(t.labels == {"taboo": 1, "empathy": 0} for t in turns)
    clauses = {c.strip("，,；;。！？")[:6] for s in plain for c in re.split(r"[，,；;]", s) if len(c) >= 6}
    assert sum(any(c in t.text for c in clauses) for t in turns) >= 25
    off = Generator(inventory, split_of, "train", seed=13, noise=0.0, scripts=scripts, context=0.0)
    assert sum(any(c in off.turn("agent", "taboo").text for c in clauses) for _ in range(30)) <= 3


def test_lexicon_turns_teach_the_qa_lexicon_and_its_polite_exceptions(tmp_path: Path) -> None:
    import csv

    from training.datasets import TurnExample, lexicon_turns

    lex = tmp_path / "lexicon.csv"
    lex.write_text("id,phrase,category,severity,note\nT1,你找物业去,推诿,2,\nT2,我保证明天来电,泄露与违规承诺,2,\n",
                   encoding="utf-8")
    ex = tmp_path / "examples.csv"
    with open(ex, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["text", "expected_taboo", "phrase_id"], ["不知道您现在方便吗", "0", "T220"],
                      ["你找物业去吧别打了", "1", "T1"]])
    hosts = [TurnExample("agent", "好的 我帮您查一下 您稍等", {"taboo": 0, "empathy": 0}),
             TurnExample("agent", "非常理解您的着急", {"taboo": 0, "empathy": 1})]
    turns = lexicon_turns(hosts, seed=1, noise=0.0, lexicon=lex, examples=ex)
    # The phrase alone and twice inside the plain host; the leak category is left to the rule engine.
    phrase = [t for t in turns if t.pattern == "lexicon/T1"]
    assert len(phrase) == 3 and all(t.labels == {"taboo": 1, "empathy": 0} for t in phrase)
    assert phrase[0].text == "你找物业去" and all("你找物业去" in t.text and "帮您查" in t.text for t in phrase[1:])
    assert not any("保证" in t.text for t in turns)
    assert not any("理解" in t.text for t in turns)  # only plain turns host a phrase
    polite = [t for t in turns if "方便" in t.text]
    assert len(polite) == 2 and all(t.labels == {"taboo": 0} for t in polite)  # empathy left unlabelled
    assert lexicon_turns(hosts, lexicon=tmp_path / "missing.csv", examples=ex) == []
    with pytest.raises(InputError, match="plain agent turns"):
        lexicon_turns(hosts[1:], lexicon=lex, examples=ex)


def test_train_only_patterns_train_and_leave_validation_and_test_as_they_were(tmp_path: Path) -> None:
    with_extra, without = tmp_path / "with", tmp_path / "without"
    a = generate(with_extra, n_turns=600, n_calls=20, seed=5, quiet=True, train_only_share=0.4)
    b = generate(without, n_turns=600, n_calls=20, seed=5, quiet=True, train_only_share=0)
    assert sum(a["train_only_patterns"].values()) >= 500 and not b["train_only_patterns"]
    # The same validation and test files, byte for byte, and the same split for every shared pattern.
    for name in ("turns_val.jsonl", "turns_test.jsonl", "calls_val.jsonl", "calls_test.jsonl"):
        assert (with_extra / name).read_bytes() == (without / name).read_bytes(), name
    assert {k: v for k, v in a["pattern_split"].items() if k in b["pattern_split"]} == b["pattern_split"]
    extra = set(a["pattern_split"]) - set(b["pattern_split"])
    assert {a["pattern_split"][k] for k in extra} == {"train"}
    trained = {t.pattern for t in read_turns(with_extra / "turns_train.jsonl")}
    assert trained & extra
    assert not {t.pattern for t in read_turns(without / "turns_train.jsonl")} & extra
    with pytest.raises(InputError, match="between 0 and 1"):
        generate(tmp_path / "bad", n_turns=600, n_calls=20, train_only_share=1.5)
    # Loaded but switched off, they change no draw: the same turns as an inventory without them.
    full, main = load_inventory(), load_inventory(train_only=False)
    assert any(p.train_only for p in full.patterns)
    gens = [Generator(inv, split_patterns(inv), "train", seed=5, noise=0.5) for inv in (full, main)]
    assert [t.text for t in gens[0].turns(200)] == [t.text for t in gens[1].turns(200)]


def test_train_only_folder_is_read_and_a_repeated_pattern_id_is_refused(tmp_path: Path) -> None:
    (tmp_path / "slots.yaml").write_text("who: [物业]\n", encoding="utf-8")
    body = "family: taboo\nrole: agent\nlabels: {taboo: 1, empathy: 0}\ngroups:\n  推诿:\n    - 找<who>去\n"
    (tmp_path / "a.yaml").write_text(body, encoding="utf-8")
    (tmp_path / "train_only").mkdir()
    (tmp_path / "train_only" / "b.yaml").write_text(body.replace("找", "你找"), encoding="utf-8")
    inv = load_inventory(tmp_path)
    assert [(p.id, p.train_only) for p in inv.patterns] == [("a/推诿/000", False), ("b/推诿/000", True)]
    assert split_patterns(inv)["b/推诿/000"] == "train"
    assert [p.id for p in load_inventory(tmp_path, train_only=False).patterns] == ["a/推诿/000"]
    (tmp_path / "train_only" / "a.yaml").write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match="unique"):
        load_inventory(tmp_path)


def _shingles(template: str, slots: dict[str, list[str]], k: int = 8, n: int = 20) -> set[str]:
    """k-character runs of a template's expansions, slot values masked (they are shared on purpose)."""
    rng, masked, out = random.Random(0), {name: ["□"] for name in slots}, set()
    for _ in range(n):
        text = re.sub(r"[，。！？、；,.!?;：:\s]", "", expand(template, rng, masked))
        out |= {text[i : i + k] for i in range(len(text) - k + 1) if "□" not in text[i : i + k]}
    return out


def test_shipped_train_only_patterns_are_labelled_by_family_and_copy_no_evaluation_wording(inventory) -> None:
    extra = [p for p in inventory.patterns if p.train_only]
    assert len(extra) >= 1000
    expected = {"taboo": {"taboo": 1, "empathy": 0}, "empathy": {"taboo": 0, "empathy": 1},
                "hard_negative": {"taboo": 0, "empathy": 0}, "neutral": {"taboo": 0, "empathy": 0}}
    for p in extra:
        assert p.role == "agent" and dict(p.labels) == expected[p.family], p.source
    split_of = split_patterns(inventory)
    held_out: set[str] = set()
    for p in inventory.patterns:
        if split_of[p.id] != "train":
            held_out |= _shingles(p.template, inventory.slots)
    # No train-only pattern shares more than a fifth of its 8-character runs with validation or test wording
    # (a main-inventory train pattern shares 0.3 % on average: common procedure words).
    for p in extra:
        runs = _shingles(p.template, inventory.slots)
        assert len(runs & held_out) <= 0.2 * len(runs), (p.source, sorted(runs & held_out)[:5])


def test_model_card_states_train_only_patterns_only_when_they_trained(tmp_path: Path) -> None:
    from models.classifier.card import write_card

    write_card(tmp_path, {"train_only_patterns": {"taboo": 1120, "empathy": 440}, "train_only_share": 0.25})
    card = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert '{"taboo": 1120, "empathy": 440}' in card and "25% share" in card
    write_card(tmp_path, {"train_only_patterns": {}, "train_only_share": 0.0})
    assert "train-only" not in (tmp_path / "README.md").read_text(encoding="utf-8")
