"""Classifier backends on tiny models trained in seconds: contract, round trip, ONNX, fine-tuning, pretraining."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kefu.io import KefuError
from kefu.schemas import Transcript, Turn
from models.classifier import load_classifier
from models.classifier_base import CallScores
from training.datasets import generate
from training.fit import FitConfig, fit

STC3_ROWS = [
    {"call_id": f"stc-{i}", "split": "train" if i % 4 else "test",
     "turns": [{"role": "customer", "text": "网速太慢了 投诉几次都没人管" if i % 2 else "谢谢 已经好了"},
               {"role": "agent", "text": "您好 已为您反馈"}],
     "labels": {"dissatisfied": i % 2}}
    for i in range(40)
]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_data")
    generate(out, n_turns=1200, n_calls=80, seed=2, quiet=True)
    stc = out / "stc3.jsonl"
    stc.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in STC3_ROWS), encoding="utf-8")
    return out


def _cfg(data: Path, out: Path, **kw) -> FitConfig:
    base = {"epochs": 1.0, "hidden": 32, "layers": 1, "heads": 2, "batch_size": 32, "threads": 1,
            "time_budget_s": 30, "stc3_path": data / "stc3.jsonl", "quiet": True,
            # The bundled hand-written calls (≈35,000 turns with repeats) and contrast turns would swamp a tiny run.
            "dev_paths": [], "contrast_paths": []}
    base.update(kw)
    return FitConfig(data_dir=data, out=out, **base)


@pytest.fixture(scope="session")
def tiny_transformer(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(_cfg(tiny_data, tmp_path_factory.mktemp("ct") / "model", max_turns=1500))


@pytest.fixture(scope="session")
def tiny_tfidf(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(_cfg(tiny_data, tmp_path_factory.mktemp("tfidf") / "model", backend="tfidf"))


TEXTS = ["你去投诉啊 我不怕", "非常理解您的心情 我马上给您加急", "我要打12398投诉你们", "好的 谢谢"]
ROLES = ["agent", "agent", "customer", "customer"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny_transformer", "tiny_tfidf"])
def test_backends_follow_the_call_classifier_contract(which: str, request: pytest.FixtureRequest) -> None:
    clf = load_classifier(request.getfixturevalue(which), runtime="torch")
    turns = clf.predict_turns(TEXTS, ROLES)
    assert [set(t) for t in turns] == [{"taboo", "empathy"}, {"taboo", "empathy"}, {"risk"}, {"risk"}]
    assert all(0.0 <= v <= 1.0 for t in turns for v in t.values())
    call = Transcript("c1", [Turn("agent", "您好 95598"), Turn("customer", "我家停电了"), Turn("agent", "马上派人")])
    scores = clf.predict_calls([call, call])
    assert isinstance(scores[0], CallScores) and len(scores) == 2
    assert 0.0 <= scores[0].complaint_risk <= 1.0 and 0.0 <= scores[0].empathy <= 1.0
    assert len(scores[0].turns) == 3 and set(scores[0].turns[1]) == {"risk"}
    assert clf.predict_turns([], []) == [] and clf.predict_calls([]) == []
    with pytest.raises(ValueError, match="roles\\[0\\] must be agent or customer"):
        clf.predict_turns(["x"], ["boss"])


@pytest.mark.slow
def test_saved_directory_is_hugging_face_style_and_round_trips(tiny_transformer: Path) -> None:
    from transformers import BertForMaskedLM

    for name in ("config.json", "model.safetensors", "vocab.txt", "README.md", "kefu_classifier.json",
                 "call_text.json", "call_text.safetensors"):
        assert (tiny_transformer / name).exists(), name
    card = (tiny_transformer / "README.md").read_text(encoding="utf-8")
    assert "taboo" in card and "data hash" in card
    # The encoder loads as a BertForMaskedLM (the heads are simply left out).
    mlm = BertForMaskedLM.from_pretrained(str(tiny_transformer))
    assert mlm.config.hidden_size == 32
    # No attention or hidden-state dropout by default (measured: more steps in the budget pay more); the
    # architecture says so.
    assert mlm.config.attention_probs_dropout_prob == 0.0 and mlm.config.hidden_dropout_prob == 0.0
    arch = json.loads((tiny_transformer / "kefu_classifier.json").read_text(encoding="utf-8"))["architecture"]
    assert arch["attention_dropout"] == 0.0 and arch["hidden_dropout"] == 0.0
    a = load_classifier(tiny_transformer, runtime="torch").predict_turns(TEXTS, ROLES)
    b = load_classifier(tiny_transformer, runtime="torch").predict_turns(TEXTS, ROLES)
    assert a == b


@pytest.mark.slow
def test_onnx_int8_agrees_with_torch(tiny_transformer: Path, tiny_data: Path) -> None:
    from training.export import export_and_check

    report = export_and_check(tiny_transformer, tiny_data / "turns_test.jsonl", tolerance=0.01)
    assert report["int8_max_abs_diff"] <= 0.01
    clf = load_classifier(tiny_transformer)  # auto: onnx when exported
    assert "onnx" in clf.name
    torch_clf = load_classifier(tiny_transformer, runtime="torch")
    calls = [Transcript("c", [Turn("customer", t) if r == "customer" else Turn("agent", t)
                              for t, r in zip(TEXTS, ROLES, strict=True)])]
    assert abs(clf.predict_calls(calls)[0].complaint_risk - torch_clf.predict_calls(calls)[0].complaint_risk) < 0.02


@pytest.mark.slow
def test_extra_labelled_turns_are_learned(tiny_data: Path, tmp_path: Path) -> None:
    phrase = "您这情况嘛咱们爱莫能助"
    extra = tmp_path / "reviewed.jsonl"
    extra.write_text(
        "".join(json.dumps({"role": "agent", "text": phrase, "labels": {"taboo": 1, "empathy": 0}},
                           ensure_ascii=False) + "\n" for _ in range(20)),
        encoding="utf-8",
    )
    without = load_classifier(fit(_cfg(tiny_data, tmp_path / "a", backend="tfidf", use_stc3=False)))
    with_extra = load_classifier(fit(_cfg(tiny_data, tmp_path / "b", backend="tfidf", use_stc3=False, extra=[extra])))
    p0 = without.predict_turns([phrase], ["agent"])[0]["taboo"]
    p1 = with_extra.predict_turns([phrase], ["agent"])[0]["taboo"]
    assert p1 > p0 + 0.2
    meta = json.loads((tmp_path / "b" / "kefu_classifier.json").read_text(encoding="utf-8"))
    assert meta["extra_turns"] == 20


@pytest.mark.slow
def test_fine_tunes_a_local_bert_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizer

    base = tmp_path / "tiny-bert"
    base.mkdir()
    chars = sorted({c for line in (tiny_data / "turns_train.jsonl").read_text(encoding="utf-8") for c in line
                    if "\u4e00" <= c <= "\u9fff"})
    (base / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                    encoding="utf-8")
    BertTokenizer(str(base / "vocab.txt")).save_pretrained(str(base))
    config = BertConfig(vocab_size=5 + len(chars), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=160)
    BertModel(config).save_pretrained(str(base))
    out = fit(_cfg(tiny_data, tmp_path / "ft", base_model=base, max_turns=600, lr=1e-3))
    meta = json.loads((out / "kefu_classifier.json").read_text(encoding="utf-8"))
    assert meta["backend"] == "hf_finetune"
    clf = load_classifier(out, runtime="torch")
    assert clf.name == "bert-finetuned"
    assert set(clf.predict_turns(["你自己看着办"], ["agent"])[0]) == {"taboo", "empathy"}


@pytest.mark.slow
def test_pretrain_then_fine_tune(tiny_data: Path, tmp_path: Path) -> None:
    from transformers import BertForMaskedLM

    from training.pretrain import pretrain

    transcripts = tmp_path / "calls.txt"
    transcripts.write_text("坐席：您好 国家电网 请问有什么可以帮您\n客户：我家停电了 什么时候来电\n", encoding="utf-8")
    out = pretrain([tiny_data / "calls_train.jsonl", transcripts], tmp_path / "pre", hidden=32, layers=1, heads=2,
                   epochs=0.2, threads=1, quiet=True)
    assert BertForMaskedLM.from_pretrained(str(out)).config.hidden_size == 32
    model = fit(_cfg(tiny_data, tmp_path / "ft", base_model=out, max_turns=600))
    assert load_classifier(model, runtime="torch").predict_turns(["好的"], ["customer"])[0]["risk"] >= 0


@pytest.mark.slow
def test_evaluation_reports_lexicon_split_and_curves(tiny_tfidf: Path, tiny_data: Path, tmp_path: Path) -> None:
    from training.evaluate import evaluate

    results = evaluate(load_classifier(tiny_tfidf), tiny_data, tmp_path, stc3_path=tiny_data / "stc3.jsonl")
    synth = results["synthetic_test"]
    for key in ("taboo_f1", "taboo_in_lexicon_f1", "taboo_not_in_lexicon_f1", "empathy_f1", "complaint_risk_auc"):
        assert key in synth
    assert synth["taboo_confusion"][0][0] + synth["taboo_confusion"][1][1] > 0
    assert results["stc3_test"]["dialogues"] == 10
    # The gold set mixes spoken calls and typed chats: complaint risk is also reported per channel.
    gold = results["gold"]
    assert gold["complaint_risk_chat_calls"] + gold["complaint_risk_voice_calls"] == gold["calls"]
    assert gold["complaint_risk_chat_calls"] > 0 and 0.0 <= gold["complaint_risk_voice_auc"] <= 1.0
    assert "complaint_risk_voice_auc" not in synth  # one channel only: no breakdown
    assert (tmp_path / "eval.md").exists() and (tmp_path / "eval.json").exists()
    # Generated sets say which taboo categories are missed and which polite speech draws false alarms.
    cats = synth["taboo_recall_by_category"]
    assert sum(c["support"] for c in cats.values()) == synth["taboo_support"]
    alarms = synth["taboo_false_alarms_by_source"]
    assert sum(a["false_alarms"] for a in alarms.values()) == synth["taboo_confusion"][0][1]
    assert "hard_negative" in alarms and "taboo_recall_by_category" not in gold  # gold turns have no pattern
    # Robustness: the same taboo turns with an empathy turn appended are still taboo, and scored as such.
    assert synth["taboo_empathy_appended_n"] == synth["taboo_support"]
    assert 0.0 <= synth["taboo_recall_empathy_appended"] <= 1.0 and "taboo_recall_empathy_appended" not in gold
    assert set(alarms) <= {"hard_negative", "empathy", "neutral", "script"}  # the generator's families
    md = (tmp_path / "eval.md").read_text(encoding="utf-8")
    assert "### synthetic_test: taboo_recall_by_category" in md and "| 推诿 |" in md
    # Every F1 and AUC comes with a 95 % interval from resampling whole calls or patterns, shown beside it.
    for res, key in ((synth, "taboo_f1"), (synth, "empathy_auc"), (gold, "taboo_auc"), (gold, "complaint_risk_auc"),
                     (synth, "taboo_not_in_lexicon_f1")):
        lo, hi = res[f"{key}_ci95"]
        assert 0.0 <= lo <= hi <= 1.0 and lo <= res[key] + 1e-9 and res[key] <= hi + 0.05
    stc3 = results["stc3_test"]  # the tiny STC-3 test rows are all of one class: no AUC, so no interval
    assert stc3["dissatisfied_auc"] is None and stc3["dissatisfied_auc_ci95"] is None
    assert results["targets"]["gold/taboo_f1"]["ci95"] == gold["taboo_f1_ci95"]
    assert f"| taboo_f1 | {synth['taboo_f1']:.4f} | {synth['taboo_f1_ci95'][0]:.3f}–" in md
    pytest.importorskip("matplotlib")
    assert (tmp_path / "pr_synthetic_test.png").exists()


@pytest.mark.slow
def test_compare_pairs_two_models_on_the_same_rows(tiny_tfidf: Path, tiny_transformer: Path, tiny_data: Path) -> None:
    from training.datasets import read_turns
    from training.evaluate import compare, comparison_markdown, evaluate_turns, turn_cluster

    a, b = load_classifier(tiny_tfidf), load_classifier(tiny_transformer, runtime="torch")
    rows = compare(a, b, tiny_data, stc3_path=tiny_data / "stc3.jsonl", resamples=200)
    taboo = next(r for r in rows if (r["set"], r["output"], r["metric"]) == ("synthetic_test", "taboo", "auc"))
    assert taboo["difference"] == pytest.approx(taboo["b"] - taboo["a"])
    lo, hi = taboo["ci95"]
    assert lo <= taboo["difference"] <= hi
    assert taboo["verdict"] == ("B better" if lo > 0 else "A better" if hi < 0 else "no clear difference")
    assert {r["set"] for r in rows} == {"synthetic_test", "gold", "stc3_test"}
    # Generated turns are resampled by pattern: far fewer clusters than turns.
    turns = read_turns(tiny_data / "turns_test.jsonl")
    assert taboo["clusters"] == len({turn_cluster(t, i) for i, t in enumerate(turns) if "taboo" in t.labels})
    assert taboo["clusters"] < taboo["n"]
    same = compare(a, a, tiny_data, stc3=False, resamples=50)
    assert all(r["difference"] == 0 and r["verdict"] == "no clear difference" for r in same)
    assert "| synthetic_test | taboo | auc |" in comparison_markdown(rows, "A", "B")
    assert "taboo_f1_ci95" not in evaluate_turns(a, turns[:50], {}, resamples=0)  # 0: no intervals


def test_taboo_categories_from_pattern_groups() -> None:
    from training.evaluate import taboo_category

    assert taboo_category("不耐烦2") == "不耐烦"
    assert taboo_category("礼貌外壳推诿") == "推诿"
    assert taboo_category("生硬补充") == "生硬拒绝"
    assert taboo_category("口语忌语") == "其他"


def test_small_config_states_its_rules() -> None:
    from models.classifier.char_transformer import small_config

    assert small_config(100, attention_dropout=0.2).attention_probs_dropout_prob == 0.2
    with pytest.raises(ValueError, match=r"attention dropout must be in \[0, 1\), got 1.0"):
        small_config(100, attention_dropout=1.0)
    assert small_config(100, hidden_dropout=0.0).hidden_dropout_prob == 0.0
    with pytest.raises(ValueError, match=r"hidden dropout must be in \[0, 1\), got 1.5"):
        small_config(100, hidden_dropout=1.5)
    with pytest.raises(ValueError, match="multiple of the head count"):
        small_config(100, hidden=30, heads=4)
    assert small_config(100).turn_pooling == "mean_cls"
    with pytest.raises(ValueError, match="turn pooling must be one of mean_cls, auto, got 'max'"):
        small_config(100, turn_pooling="max")


def test_load_classifier_rejects_a_non_model_folder(tmp_path: Path) -> None:
    with pytest.raises(KefuError, match="not a kefu classifier directory"):
        load_classifier(tmp_path)
    with pytest.raises(ValueError, match="runtime must be one of"):
        load_classifier(tmp_path, runtime="gpu")  # type: ignore[arg-type]


def test_calibrator_and_aggregator_basics() -> None:
    from models.classifier.common import AGG_FEATURES, Aggregator, Calibrator

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    logits = ((y * 2 - 1) * 1.0 + rng.normal(0, 1, 500)) * 8.0  # eight times too confident
    t = Calibrator.fit_one(logits, y.astype(float))
    assert t > 3
    agg = Aggregator()
    x = rng.random((50, len(AGG_FEATURES)))
    agg.fit(x, {"complaint_risk": (x[:, 0] > 0.5).astype(int)})
    assert Aggregator.from_dict(agg.to_dict()).weights == agg.weights
    with pytest.raises(ValueError, match="aggregator features"):
        Aggregator.from_dict({"features": ["x"], "weights": {}})
