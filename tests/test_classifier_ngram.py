"""The transformer's n-gram (wide) branch and the per-output decision thresholds, on tiny models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kefu.io import InputError
from models.classifier import load_classifier
from models.classifier.common import Calibrator, best_threshold
from training.datasets import generate
from training.fit import FitConfig, fit

TEXTS = ["你去投诉啊 我不怕", "非常理解您的心情 我马上给您加急", "我要打12398投诉你们", "好的 谢谢"]
ROLES = ["agent", "agent", "customer", "customer"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ngram_data")
    generate(out, n_turns=800, n_calls=40, seed=3, quiet=True)
    # A few hand-written "dev" calls in the gold format: they may choose thresholds, never train.
    dev = [{"call_id": f"dev-{i}", "turns": [
        {"role": "agent", "text": "您好 请问有什么可以帮您", "labels": {"taboo": 0, "empathy": 0}},
        {"role": "customer", "text": "你们再不来修我就打12398" if i % 2 else "我家停电了", "labels": {"risk": i % 2}},
        {"role": "agent", "text": "你自己看着办吧" if i % 2 else "非常理解您的着急", "labels": {"taboo": i % 2,
                                                                                   "empathy": 1 - i % 2}},
    ], "labels": {"complaint_risk": i % 2, "empathy": 1 - i % 2}} for i in range(6)]
    (out / "dev_calls.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in dev),
                                         encoding="utf-8")
    # A second hand-written set that only chooses thresholds.
    thr = [{"call_id": f"thr-{i}", "turns": [
        {"role": "customer", "text": "都第三次打了还没人来" if i % 2 else "想问下电费怎么交",
         "labels": {"risk": i % 2}},
        {"role": "agent", "text": "爱等不等" if i % 2 else "让您跑了好几趟 真不好意思", "labels": {"taboo": i % 2,
                                                                                  "empathy": 1 - i % 2}},
    ], "labels": {"complaint_risk": i % 2, "empathy": 1 - i % 2}} for i in range(4)]
    (out / "threshold_calls.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in thr),
                                               encoding="utf-8")
    return out


def _cfg(data: Path, out: Path, **kw) -> FitConfig:
    base = {"epochs": 1.0, "hidden": 32, "layers": 1, "heads": 2, "batch_size": 32, "threads": 1,
            "time_budget_s": 30, "use_stc3": False, "quiet": True, "max_turns": 800, "ngram_dim": 16,
            "ngram_vocab": 5000, "dev_paths": [data / "dev_calls.jsonl"], "threshold_paths": [],
            "contrast_paths": []}
    base.update(kw)
    return FitConfig(data_dir=data, out=out, **base)


@pytest.fixture(scope="module")
def wide_model(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit(_cfg(data, tmp_path_factory.mktemp("wide") / "model"))


@pytest.mark.slow
def test_ngram_branch_is_saved_and_drives_predictions(wide_model: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.numpy import load_file, save_file
    from transformers import BertForMaskedLM

    assert (wide_model / "ngram_vocab.txt").read_text(encoding="utf-8").startswith("[PAD]\n")
    config = json.loads((wide_model / "config.json").read_text(encoding="utf-8"))
    assert config["ngram_dim"] == 16 and config["ngram_vocab_size"] > 100
    meta = json.loads((wide_model / "kefu_classifier.json").read_text(encoding="utf-8"))
    assert meta["architecture"]["ngram_branch"]["dim"] == 16
    # Taboo windows are on by default and travel with the model to both runtimes.
    assert meta["taboo_windows"] == {"size": 30, "stride": 15, "min_chars": 60, "discount": 1.5}
    assert load_classifier(wide_model, runtime="torch").taboo_windows is not None
    # The encoder still loads as a masked LM (the n-gram table and heads are left out).
    assert BertForMaskedLM.from_pretrained(str(wide_model)).config.hidden_size == 32
    before = load_classifier(wide_model, runtime="torch").predict_turns(TEXTS, ROLES)
    assert before == load_classifier(wide_model, runtime="torch").predict_turns(TEXTS, ROLES)
    # Zeroing the n-gram table (in a copy) changes the probabilities: the branch is part of every prediction.
    copy = shutil.copytree(wide_model, tmp_path / "zeroed")
    tensors = load_file(str(copy / "model.safetensors"))
    tensors["ngram.weight"] = np.zeros_like(tensors["ngram.weight"])
    save_file(tensors, str(copy / "model.safetensors"), metadata={"format": "pt"})
    after = load_classifier(copy, runtime="torch").predict_turns(TEXTS, ROLES)
    diffs = [abs(a[k] - b[k]) for a, b in zip(before, after, strict=True) for k in a]
    assert max(diffs) > 1e-3


@pytest.mark.slow
def test_thresholds_chosen_on_val_and_dev_are_saved_and_applied(data: Path, tmp_path: Path) -> None:
    model = fit(_cfg(data, tmp_path / "m", dev_use="thresholds", threshold_paths=[data / "threshold_calls.jsonl"]))
    meta_path = model / "kefu_classifier.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert set(meta["thresholds"]) == {"taboo", "empathy", "risk"}
    assert all(0.05 <= t <= 0.95 for t in meta["thresholds"].values())
    assert meta["threshold_selection"]["taboo"]["sets"] == ["val", "threshold_calls", "dev"]
    assert meta["train_counts"]["dev_turns"] == 18 and meta["train_counts"]["dev_turns_trained"] == 0
    assert meta["train_counts"]["threshold_turns"] == 8
    # A threshold read from disk moves the decision point: the probability equal to it reads 0.5.
    meta["thresholds"] = {}
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    raw = load_classifier(model, runtime="torch").predict_turns(TEXTS[:1], ROLES[:1])[0]["taboo"]
    meta["thresholds"] = {"taboo": raw}
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    shifted = load_classifier(model, runtime="torch").predict_turns(TEXTS[:1], ROLES[:1])[0]["taboo"]
    assert shifted == pytest.approx(0.5, abs=1e-6)
    no_thr = fit(_cfg(data, tmp_path / "n", thresholds=False))
    assert json.loads((no_thr / "kefu_classifier.json").read_text(encoding="utf-8"))["thresholds"] == {}


def test_dev_calls_train_by_default_and_then_leave_thresholds_to_validation(wide_model: Path, data: Path) -> None:
    meta = json.loads((wide_model / "kefu_classifier.json").read_text(encoding="utf-8"))
    # 18 labelled dev turns, each repeated dev_weight (5) times, always kept by the max_turns cut.
    assert meta["train_counts"]["dev_turns_trained"] == 90 and meta["train_counts"]["dev_turns"] == 0
    assert meta["threshold_selection"]["taboo"]["sets"] == ["val"]
    # Chosen for the hand-written calls' share of positives; the validation-share thresholds are kept beside.
    assert meta["threshold_selection"]["taboo"]["prior"] == "calls"
    assert meta["threshold_selection"]["taboo"]["handwritten_share"] == pytest.approx(3 / 12, abs=1e-4)
    assert set(meta["thresholds_generated"]) == set(meta["thresholds"]) == {"taboo", "empathy", "risk"}
    with pytest.raises(InputError, match="--dev-use must be one of train, thresholds, none"):
        _cfg(data, data / "x", dev_use="tune")


def test_threshold_calls_never_train_and_bad_paths_are_refused(data: Path) -> None:
    from training.fit import load_train_data

    cfg = _cfg(data, data / "x", threshold_paths=[data / "threshold_calls.jsonl"])
    loaded = load_train_data(cfg)
    assert len(loaded.threshold_turns) == 8
    trained = {t.text for t in loaded.turns}
    assert not trained & {t.text for t in loaded.threshold_turns}
    assert {"爱等不等", "你自己看着办吧"} & trained == {"你自己看着办吧"}  # dev trains, threshold calls do not
    with pytest.raises(InputError, match="would both train and choose thresholds"):
        _cfg(data, data / "x", threshold_paths=[data / "dev_calls.jsonl"])
    with pytest.raises(InputError, match=r"--threshold-calls .*missing\.jsonl: no such file"):
        _cfg(data, data / "x", threshold_paths=[data / "missing.jsonl"])
    with pytest.raises(InputError, match=r"--dev .*missing\.jsonl: no such file"):
        _cfg(data, data / "x", dev_paths=[data / "missing.jsonl"])


def test_contrast_turns_train_unless_turned_off(data: Path) -> None:
    from training.fit import load_train_data

    path = data / "contrast.jsonl"
    rows = [{"role": "agent", "text": "这点小事也值得打电话", "labels": {"taboo": 1, "empathy": 0}, "group": "g1"},
            {"role": "agent", "text": "这点小事也值得您专门打电话来 说明您真着急", "labels": {"taboo": 0, "empathy": 1},
             "group": "g1"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    loaded = load_train_data(_cfg(data, data / "x", contrast_paths=[path], contrast_weight=2))
    texts = [t.text for t in loaded.turns]
    assert texts.count("这点小事也值得打电话") == 2 and loaded.counts["contrast_turns"] == 2
    without = load_train_data(_cfg(data, data / "x", contrast_paths=[]))
    assert "这点小事也值得打电话" not in [t.text for t in without.turns] and without.counts["contrast_turns"] == 0
    with pytest.raises(InputError, match=r"--contrast .*missing\.jsonl: no such file"):
        _cfg(data, data / "x", contrast_paths=[data / "missing.jsonl"])
    with pytest.raises(InputError, match="--contrast-weight must be >= 1, got 0"):
        _cfg(data, data / "x", contrast_weight=0)


def test_label_smoothing_is_validated_and_moves_only_the_named_outputs(data: Path, tmp_path: Path) -> None:
    from training.fit import smoothing_vector

    assert smoothing_vector(0.1, ("taboo",)).tolist() == pytest.approx([0.1, 0.0, 0.0])
    assert smoothing_vector(0.2, ("empathy", "risk")).tolist() == pytest.approx([0.0, 0.2, 0.2])
    with pytest.raises(InputError, match=r"--label-smoothing must be in \[0, 1\), got 1.0"):
        _cfg(data, tmp_path / "x", label_smoothing=1.0)
    with pytest.raises(InputError, match="must name some of taboo, empathy, risk, got polite"):
        _cfg(data, tmp_path / "x", label_smoothing=0.1, label_smoothing_outputs=("polite",))
    with pytest.raises(InputError, match="the tfidf backend has none to smooth"):
        _cfg(data, tmp_path / "x", label_smoothing=0.1, backend="tfidf")
    model = fit(_cfg(data, tmp_path / "ls", label_smoothing=0.1, time_budget_s=5, taboo_windows=False))
    arch = json.loads((model / "kefu_classifier.json").read_text(encoding="utf-8"))["architecture"]
    assert arch["label_smoothing"] == {"taboo": 0.1}
    assert '"label_smoothing"' in (model / "README.md").read_text(encoding="utf-8")


def test_hidden_dropout_is_validated_and_reaches_the_saved_model(data: Path, tmp_path: Path) -> None:
    from transformers import BertConfig

    with pytest.raises(InputError, match=r"--hidden-dropout must be in \[0, 1\), got 1.0"):
        _cfg(data, tmp_path / "x", hidden_dropout=1.0)
    with pytest.raises(InputError, match=r"--hidden-dropout must be in \[0, 1\), got -0.1"):
        _cfg(data, tmp_path / "x", hidden_dropout=-0.1)
    with pytest.raises(InputError, match="the tfidf backend has none"):
        _cfg(data, tmp_path / "x", hidden_dropout=0.1, backend="tfidf")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="a --base-model checkpoint keeps its own"):
        _cfg(data, tmp_path / "x", hidden_dropout=0.1, base_model=ckpt)
    model = fit(_cfg(data, tmp_path / "hd", hidden_dropout=0.25, time_budget_s=5, taboo_windows=False))
    assert BertConfig.from_pretrained(str(model)).hidden_dropout_prob == 0.25
    arch = json.loads((model / "kefu_classifier.json").read_text(encoding="utf-8"))["architecture"]
    assert arch["hidden_dropout"] == 0.25


@pytest.mark.slow
def test_onnx_int8_with_the_ngram_input_agrees_with_torch(data: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from training.export import export_and_check

    model = fit(_cfg(data, tmp_path / "m", seed=5))
    report = export_and_check(model, data / "turns_test.jsonl", tolerance=0.01)
    assert report["int8_max_abs_diff"] <= 0.01 and report["turns_checked"] > 100
    names = [i.name for i in ort.InferenceSession(str(model / "onnx" / "model.int8.onnx")).get_inputs()]
    assert "ngram_ids" in names
    clf = load_classifier(model)
    assert "onnx" in clf.name
    torch_p = load_classifier(model, runtime="torch").predict_turns(TEXTS, ROLES)
    for a, b in zip(clf.predict_turns(TEXTS, ROLES), torch_p, strict=True):
        assert all(abs(a[k] - b[k]) <= 0.01 for k in a)


def test_tokenizer_ngram_ids_round_trip(tmp_path: Path) -> None:
    from models.classifier.char_transformer import CharTokenizer, build_ngram_vocab

    texts = ["你去投诉啊", "你去投诉吧", "投诉电话"]
    tok = CharTokenizer.build(texts, min_count=1)
    tok.set_ngrams(build_ngram_vocab(texts, min_count=2))
    enc = tok.encode_batch(["你去投诉", "完全没见过"], 16)
    ids = enc["ngram_ids"]
    assert ids.shape[0] == 2 and (ids[0] > 0).sum() > 3 and (ids[1] > 0).sum() == 0  # unknown n-grams dropped
    tok.save(tmp_path)
    again = CharTokenizer.load(tmp_path)
    assert again.ngram_vocab == tok.ngram_vocab
    assert np.array_equal(again.encode_batch(["你去投诉"], 16)["ngram_ids"], ids[:1, : ids[0].astype(bool).sum()])


def test_packed_ngram_lookup_equals_the_plain_one() -> None:
    """The vectorised lookup gives the ids a dict lookup of every n-gram gives, in the same order."""
    from models.classifier.char_transformer import CharTokenizer, build_ngram_vocab, char_ngrams

    texts = ["你去投诉啊 我不怕", "非常理解您的心情 我马上给您加急", "您好，请问户号是多少？", "𠀀𠀁你去投诉"]
    tok = CharTokenizer.build(texts, min_count=1)
    tok.set_ngrams(build_ngram_vocab([*texts, *texts], min_count=2))
    batch = [*texts, "", "完全没见过", "你", " 你 去 ", "你去投诉啊你去投诉啊"]
    rows = [[tok.ngram_index[g] for g in char_ngrams(t) if g in tok.ngram_index] for t in batch]
    want = np.zeros((len(batch), max(len(r) for r in rows)), dtype=np.int64)
    for i, r in enumerate(rows):
        want[i, : len(r)] = r
    assert np.array_equal(tok.ngram_batch(batch), want)
    assert tok.ngram_batch([""]).shape == (1, 1) and tok.ngram_batch([]).shape == (0, 1)
    four = CharTokenizer.build(texts, min_count=1)  # n-grams too long to pack: the plain lookup
    four.set_ngrams(build_ngram_vocab(texts, n_max=4, min_count=1), ngram_max=4)
    assert (four.ngram_batch(["你去投诉"]) > 0).sum() == 10
    with pytest.raises(ValueError, match="ngram_max must be at least 1"):
        tok.set_ngrams(tok.ngram_vocab, ngram_max=0)


def test_best_threshold_and_calibrator_shift() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    t, f1 = best_threshold([(y, p)])
    assert 0.35 < t <= 0.4 and f1 == pytest.approx(1.0)
    assert best_threshold([(np.zeros(3, dtype=int), np.ones(3))]) == (0.5, pytest.approx(float("nan"), nan_ok=True))
    cal = Calibrator({"taboo": 2.0}, {"taboo": 0.3})
    logit = 2.0 * np.log(0.3 / 0.7)  # calibrated probability 0.3 → exactly the threshold
    assert cal.apply("taboo", np.array([logit]))[0] == pytest.approx(0.5)
    assert Calibrator.from_meta({"temperatures": {"taboo": 2.0}}).apply("taboo", np.array([logit]))[0] == (
        pytest.approx(0.3))


def test_negative_weights_move_the_threshold_up_and_are_validated() -> None:
    y = np.array([0] * 6 + [1] * 6)
    p = np.array([0.1, 0.2, 0.3, 0.45, 0.55, 0.65, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    t_plain, _ = best_threshold([(y, p)])
    t_rare, _ = best_threshold([(y, p)], negative_weights=[5.0])  # positives five times rarer in real calls
    assert t_rare > t_plain
    with pytest.raises(ValueError, match="one positive negative-weight per set"):
        best_threshold([(y, p)], negative_weights=[1.0, 2.0])


def _threshold_data(share: dict[str, float]):
    from training.datasets import TurnExample
    from training.fit import TrainData

    rng = np.random.default_rng(0)
    y = np.array([0] * 300 + [1] * 300)  # validation: half taboo, as generated data has far more than real calls
    logits = np.where(y == 1, rng.normal(1.0, 1.0, 600), rng.normal(-1.0, 1.0, 600))
    val = [TurnExample("agent", f"t{i}", {"taboo": int(v)}) for i, v in enumerate(y)]
    data = TrainData([], [], [], val, [], [], {}, handwritten_share=share)
    return data, np.stack([logits, np.zeros(600), np.zeros(600)], axis=1)


@pytest.mark.parametrize("prior", ["calls", "validation"])
def test_thresholds_follow_the_positive_share_of_the_hand_written_calls(prior: str) -> None:
    from types import SimpleNamespace

    from training.fit import _choose_thresholds

    data, logits = _threshold_data({"taboo": 0.08})
    clf = SimpleNamespace(calibrator=Calibrator({}))
    _choose_thresholds(clf, data, logits, prior)
    rep = clf.threshold_report["taboo"]
    assert clf.thresholds_generated["taboo"] == rep["threshold_at_validation_share"]
    if prior == "calls":
        # 8 % positives instead of 50 %: each validation negative counts (0.92/0.08) / (300/300) = 11.5 times.
        assert rep["validation_negative_weight"] == pytest.approx(11.5)
        assert clf.calibrator.thresholds["taboo"] > clf.thresholds_generated["taboo"] + 0.1
    else:
        assert clf.calibrator.thresholds["taboo"] == clf.thresholds_generated["taboo"]
    with pytest.raises(InputError, match="--threshold-prior must be one of calls, validation"):
        _cfg(Path("."), Path("x"), threshold_prior="gold")


def test_generated_test_sets_are_scored_at_the_validation_share_thresholds() -> None:
    from types import SimpleNamespace

    from training.datasets import TurnExample
    from training.evaluate import evaluate_turns, generated_shift

    # Shipped threshold 0.7 (real-call share), 0.4 at the generated share; a turn at calibrated 0.5 reads
    # sigmoid(logit(0.5) - logit(0.7)) ≈ 0.30 from the model: not flagged as shipped, flagged on generated data.
    clf = SimpleNamespace(meta={"thresholds": {"taboo": 0.7}, "thresholds_generated": {"taboo": 0.4}},
                          predict_turns=lambda texts, roles: [{"taboo": 0.3}, {"taboo": 0.1}])
    shift = generated_shift(clf)
    assert shift["taboo"] == pytest.approx(np.log(0.7 / 0.3) - np.log(0.4 / 0.6))
    turns = [TurnExample("agent", "a", {"taboo": 1}), TurnExample("agent", "b", {"taboo": 0})]
    assert evaluate_turns(clf, turns, {})["taboo_recall"] == 0.0
    assert evaluate_turns(clf, turns, {}, shift)["taboo_recall"] == 1.0
    assert generated_shift(SimpleNamespace(meta={"thresholds": {"taboo": 0.5}})) == {}  # models saved before


def test_auto_pool_lets_one_clear_position_outweigh_many_mild_ones() -> None:
    import torch

    from models.classifier.char_transformer import auto_pool

    # One rude clause (score 4) among 60 positions of procedure (score -1): a mean calls the turn harmless.
    scores = torch.full((1, 61, 1), -1.0)
    scores[0, 30, 0] = 4.0
    mask = torch.ones(1, 61)
    assert float(scores.mean()) < 0 < float(auto_pool(scores, mask)) <= 4.0
    # Masked positions count for nothing; a row without any position scores 0.
    masked = mask.clone()
    masked[0, 30] = 0
    assert float(auto_pool(scores, masked)) == pytest.approx(-1.0)
    assert float(auto_pool(scores, torch.zeros(1, 61))) == 0.0


def test_auto_turn_pooling_trains_saves_exports_and_is_validated(data: Path, tmp_path: Path) -> None:
    from models.classifier.char_transformer import KefuBertClassifier
    from training.export import export_and_check

    model = fit(_cfg(data, tmp_path / "auto", turn_pooling="auto", seed=7, taboo_windows=False))
    assert json.loads((model / "config.json").read_text(encoding="utf-8"))["turn_pooling"] == "auto"
    meta = json.loads((model / "kefu_classifier.json").read_text(encoding="utf-8"))
    assert meta["architecture"]["turn_pooling"] == "auto"
    assert meta["taboo_windows"] is None and load_classifier(model).taboo_windows is None
    net = KefuBertClassifier.from_pretrained(str(model))
    assert net.token_head is not None and net.ngram_head is not None and not hasattr(net, "turn_head")
    torch_p = load_classifier(model, runtime="torch").predict_turns(TEXTS, ROLES)
    assert all(0.0 <= p[k] <= 1.0 for p in torch_p for k in p)
    report = export_and_check(model, data / "turns_test.jsonl", tolerance=0.01)
    assert report["int8_max_abs_diff"] <= 0.01
    onnx_p = load_classifier(model).predict_turns(TEXTS, ROLES)
    assert all(abs(a[k] - b[k]) <= 0.01 for a, b in zip(onnx_p, torch_p, strict=True) for k in a)
    with pytest.raises(InputError, match="--turn-pooling must be one of mean_cls, auto, got 'max'"):
        _cfg(data, tmp_path / "x", turn_pooling="max")


def _diluting_backend() -> Any:
    """A stand-in backend whose taboo logit is high for a rude clause but sinks with every character around it."""
    from models.classifier.common import Aggregator, Calibrator, TabooWindows, TurnModelMixin

    class Diluting(TurnModelMixin):
        name = "diluting"

        def __init__(self) -> None:
            self.calibrator = Calibrator({})
            self.aggregator = Aggregator({})
            self.taboo_windows = TabooWindows()
            self.seen: list[str] = []

        def _logits(self, texts: Sequence[str], roles: Sequence[str]) -> np.ndarray:
            self.seen.extend(texts)
            z = np.array([(8.0 if "滚开" in t else -2.0) - 0.15 * len(t) for t in texts])
            return np.stack([z, np.zeros(len(texts)), np.full(len(texts), -1.0)], axis=1)

    return Diluting()


def test_taboo_windows_find_a_rude_clause_that_long_procedure_dilutes() -> None:
    from models.classifier.common import TabooWindows

    procedure = ("您好，请您提供户号、联系电话和现场电能表情况，我这边为您登记故障报修工单，"
                 "工作人员会在两小时内到达现场，请您保持电话畅通")
    rude = procedure + "，滚开吧，别烦我"
    clf = _diluting_backend()
    customer = procedure + "，我要投诉你们"
    out = clf.predict_turns([rude, procedure, customer], ["agent", "agent", "customer"])
    assert out[0]["taboo"] > 0.5  # read in a window, the clause is no longer diluted
    assert out[1]["taboo"] < 0.5  # procedure alone stays clean in every window
    assert len([t for t in clf.seen if "投诉你们" in t]) == 1  # customer turns are read whole, once
    clf.taboo_windows = None
    assert clf.predict_turns([rude], ["agent"])[0]["taboo"] < 0.5
    # Windows: short turns are read whole; long ones are covered end to end.
    w = TabooWindows(size=10, stride=5, min_chars=0)
    assert w.of("短短一句话") == [] and w.of("一二三四五六七八九十") == []
    text = "".join(str(i % 10) for i in range(33))
    pieces = w.of(text)
    assert pieces[0] == text[:10] and text.endswith(pieces[-1]) and all(len(p) <= 10 for p in pieces)
    assert TabooWindows(min_chars=100).of(text) == []
    with pytest.raises(ValueError, match="window stride must be between 1 and the window size"):
        TabooWindows(size=10, stride=20)
    with pytest.raises(ValueError, match="must be >= 0"):
        TabooWindows(discount=-1.0)
