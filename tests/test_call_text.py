"""The whole-call text model: learns where in a call the unhappy words are, round-trips, feeds the aggregator."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from models.classifier.call_text import CallTextModel, load_call_text, structure

CALM_END = ["好的 谢谢 已经恢复了", "明白了 麻烦你们了", "行 那我等通知", "好 知道了 谢谢你"]
ANGRY_END = ["到现在还没人来 我要打12398投诉", "你们就会说反馈 一点用没有", "第三次打了还是没解决 太气人了",
             "再不来人我就找媒体曝光"]
OPEN = ["我家停电了 什么时候来电", "电费怎么突然这么多", "我想问下表计的事", "门口电线杆歪了"]
AGENT = ["您好 已为您登记 会尽快处理", "好的 我帮您查一下", "请您留个电话 工作人员联系您"]


def _calls(n: int, seed: int) -> tuple[list[list[tuple[str, str]]], list[float]]:
    rng = random.Random(seed)
    calls, targets = [], []
    for i in range(n):
        angry = i % 2 == 1
        # Same opening and agent wording either way: only the customer's last turn tells them apart.
        turns = [("customer", rng.choice(OPEN)), ("agent", rng.choice(AGENT)),
                 ("customer", rng.choice(ANGRY_END if angry else CALM_END))]
        calls.append(turns)
        targets.append(1.5 if angry else -1.0)
    return calls, targets


@pytest.fixture(scope="module")
def model() -> CallTextModel:
    calls, targets = _calls(80, seed=1)
    return CallTextModel.train(calls, targets)


def test_ranks_unresolved_calls_above_resolved_ones(model: CallTextModel) -> None:
    from sklearn.metrics import roc_auc_score

    calls, targets = _calls(40, seed=2)
    scores = model.score(calls)
    assert roc_auc_score([t > 0 for t in targets], scores) > 0.95
    assert model.info["calls"] == 80 and set(model.info["vocabulary"]) == {
        "customer", "agent", "customer_first", "customer_later", "customer_last"}


def test_round_trips_through_a_directory(model: CallTextModel, tmp_path: Path) -> None:
    assert load_call_text(tmp_path) is None  # a model saved before the call text model existed
    model.save(tmp_path)
    again = load_call_text(tmp_path)
    assert again is not None
    calls, _ = _calls(10, seed=3)
    np.testing.assert_allclose(again.score(calls), model.score(calls), atol=1e-5)
    assert model.score([]).shape == (0,)


def test_structure_features_and_bad_arguments() -> None:
    feats = structure([("customer", "怎么还没来电！！"), ("agent", "马上处理"), ("customer", "什么时候？")])
    assert feats[2] == 2.0 and feats[3] == 1.0 and feats[5] == 1.0
    calls, targets = _calls(12, seed=4)
    with pytest.raises(ValueError, match="same length"):
        CallTextModel.train(calls, targets[:-1])
    with pytest.raises(ValueError, match="at least 10 calls"):
        CallTextModel.train(calls[:3], targets[:3])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        CallTextModel.train(calls, targets, alpha=0)
    with pytest.raises(ValueError, match="logistic_weight must be >= 0"):
        CallTextModel.train(calls, targets, logistic_weight=-0.5)


def test_logistic_part_changes_the_ranking_and_stays_one_linear_model() -> None:
    calls, targets = _calls(80, seed=6)
    ridge_only = CallTextModel.train(calls, targets, logistic_weight=0.0)
    both = CallTextModel.train(calls, targets)
    assert "logistic_c" in both.info and "logistic_c" not in ridge_only.info
    assert both.coef.shape == ridge_only.coef.shape and not np.allclose(both.coef, ridge_only.coef)
    # One class only (no binary label to learn): the ridge alone, no error.
    same = CallTextModel.train(calls, [-1.0] * len(calls))
    assert "logistic_c" not in same.info


def test_aggregator_loads_weights_saved_before_a_feature_existed() -> None:
    from models.classifier.common import AGG_FEATURES, Aggregator

    old = [f for f in AGG_FEATURES if f != "call_text"]
    agg = Aggregator.from_dict({"features": old, "weights": {"complaint_risk": [*range(len(old)), -1.0]}})
    w = agg.weights["complaint_risk"]
    assert len(w) == len(AGG_FEATURES) + 1 and w[AGG_FEATURES.index("call_text")] == 0.0 and w[-1] == -1.0
    assert w[AGG_FEATURES.index("risk_mean")] == 1.0
    with pytest.raises(ValueError, match="expected"):
        Aggregator.from_dict({"features": old, "weights": {"complaint_risk": [0.0]}})


def test_holdout_calls_are_scored_by_a_copy_that_never_saw_their_targets() -> None:
    calls, targets = _calls(60, seed=5)
    # Flip the held-out calls' targets: the shipped model learns them, the out-of-sample copy cannot.
    holdout = [i % 5 == 0 for i in range(60)]
    flipped = [-t if h else t for t, h in zip(targets, holdout, strict=True)]
    full, scorer = CallTextModel.train_with_holdout(calls, flipped, None, holdout)
    assert full.info["calls"] == 60 and scorer.info["calls"] == 48
    assert full.vectorizers is scorer.vectorizers  # one label-free vocabulary
    held = [c for c, h in zip(calls, holdout, strict=True) if h]
    truth = np.array([t for t, h in zip(targets, holdout, strict=True) if h])
    # Out of sample, the held-out calls are ranked by what the other calls taught (the true pattern).
    assert np.corrcoef(scorer.score(held), truth)[0, 1] > 0.5
    assert np.corrcoef(full.score(held), truth)[0, 1] < np.corrcoef(scorer.score(held), truth)[0, 1]
    same, again = CallTextModel.train_with_holdout(calls, targets, None, None)
    assert same is again
    with pytest.raises(ValueError, match="holdout must flag every call"):
        CallTextModel.train_with_holdout(calls, targets, None, holdout[:-1])
    with pytest.raises(ValueError, match="outside the holdout"):
        CallTextModel.train_with_holdout(calls[:12], targets[:12], None, [True] * 12)


def test_written_channels_get_their_own_aggregator_weights() -> None:
    """Typed chats and spoken calls are aggregated apart: in this data the turn model's risk decides spoken
    calls and the whole-call text score decides typed ones, and one fitted aggregator learns both."""
    from kefu.schemas import Transcript, Turn
    from models.classifier.common import (
        AGG_FEATURES,
        BASE_FEATURES,
        Aggregator,
        Calibrator,
        TurnModelMixin,
        call_features,
        is_written,
    )

    assert is_written("chat") and is_written(" WeChat ") and is_written("weibo")
    assert not is_written("voice") and not is_written(None) and not is_written("") and not is_written(3)
    rng = np.random.default_rng(0)
    feats, ys = [], []
    for i in range(400):
        written = i % 2 == 1
        risk, text = rng.random(), rng.normal()
        y = (text > 0) if written else (risk > 0.5)
        row = call_features([{"risk": risk}, {"taboo": 0.1, "empathy": 0.6}], ["customer", "agent"], 0.3, text, written)
        assert len(row) == len(AGG_FEATURES) == 2 * len(BASE_FEATURES) + 1
        feats.append(row)
        ys.append(int(y))
    agg = Aggregator()
    agg.fit(np.asarray(feats), {"complaint_risk": np.asarray(ys), "empathy": 1 - np.asarray(ys)})
    assert Aggregator.from_dict(agg.to_dict()).weights == agg.weights

    class Fixed(TurnModelMixin):
        """Every customer turn at risk 0.9; the text score comes from the call's last word."""

        name = "fixed"
        calibrator = Calibrator({})
        aggregator = agg

        def _logits(self, texts: list[str], roles: list[str]) -> np.ndarray:
            return np.tile([-3.0, 0.0, 2.2], (len(texts), 1))

        def _call_logits(self, contexts: list[str]) -> np.ndarray:
            return np.zeros(len(contexts))

        def call_text_scores(self, calls: list[list[tuple[str, str]]]) -> np.ndarray:
            return np.array([-2.0 if c[-1][1].endswith("谢谢") else 2.0 for c in calls])

    calm = [Turn(role="customer", text="停电了什么时候来电"), Turn(role="agent", text="已登记"),
            Turn(role="customer", text="好的谢谢")]
    voice, chat = Transcript("v1", calm, {"channel": "voice"}), Transcript("c1", calm, {"channel": "chat"})
    risk_voice, risk_chat = (s.complaint_risk for s in Fixed().predict_calls([voice, chat]))
    # Spoken: the risky customer turns decide (high); typed: the calm whole-call text decides (low).
    assert risk_voice > 0.7 and risk_chat < 0.3
