"""Encoders: the trained built-in n-gram encoder, the untrained fallback and local Hugging Face checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.encoders import EncoderError, load_encoder
from models.encoders.builtin import NgramEncoder
from tests.kb_fixtures import SCRIPTS, shared_tiny_encoder


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_encoder(tmp_path_factory)


def test_builtin_vectors_are_unit_float32_and_group_paraphrases(tiny_encoder_path: Path) -> None:
    enc = load_encoder(tiny_encoder_path)
    assert isinstance(enc, NgramEncoder)
    v = enc.encode(["我家停电了", "家里突然没电了", "这个月电费怎么这么高", ""])
    assert v.dtype == np.float32 and v.shape == (4, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-5)
    assert not v[3].any()  # an empty text is a zero vector, not NaN
    assert v[0] @ v[1] > v[0] @ v[2]


def test_single_text_path_matches_batch_path(tiny_encoder_path: Path) -> None:
    enc = load_encoder(tiny_encoder_path)
    texts = ["峰谷电价怎么算", "网上国网怎么绑户号"]
    batch = enc.encode(texts)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(enc.encode([t])[0], batch[i], atol=1e-5)


def test_saved_directory_is_hf_style_and_round_trips(tiny_encoder_path: Path, tmp_path: Path) -> None:
    assert {"config.json", "model.safetensors", "vocab.txt", "README.md"} <= {
        p.name for p in tiny_encoder_path.iterdir()
    }
    enc = load_encoder(tiny_encoder_path)
    enc.save(tmp_path / "copy")
    again = load_encoder(tmp_path / "copy")
    np.testing.assert_allclose(enc.encode(["我要投诉你们"]), again.encode(["我要投诉你们"]), atol=1e-3)
    assert json.loads((tmp_path / "copy" / "config.json").read_text())["kefu_encoder"] == "ngram"


def test_untrained_fallback_is_tfidf_like() -> None:
    texts = [q for s in SCRIPTS for q in s.questions]
    enc = NgramEncoder.fit_unsupervised(texts, dim=64)
    v = enc.encode(["我家停电了", "我家停电了", "充电桩怎么报装"])
    assert v[0] @ v[1] == pytest.approx(1.0, abs=1e-5)
    assert v[0] @ v[2] < 0.5


def test_load_encoder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="not found"):
        load_encoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match=r"no config\.json"):
        load_encoder(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text('{"kefu_encoder": "laser"}')
    with pytest.raises(EncoderError, match="unknown encoder kind"):
        load_encoder(tmp_path / "odd")


def test_train_config_validates() -> None:
    from training.encoder import TrainConfig

    with pytest.raises(ValueError, match="dim"):
        TrainConfig(dim=2)
    with pytest.raises(ValueError, match="ngram"):
        TrainConfig(ngram_min=3, ngram_max=2)


def test_training_never_reads_test_rows(tmp_path: Path) -> None:
    from training.encoder import TrainConfig, train_encoder

    pairs = tmp_path / "pairs.tsv"
    rows = ["id\tq1\tq2\tlabel\tsplit"]
    rows += [f"{i}\t花呗怎么还款\t花呗还款方式\t1\ttrain" for i in range(20)]
    rows += [f"{i}\t借呗额度\t花呗怎么还款\t0\ttrain" for i in range(20, 40)]
    rows += ["99\t鑫鑫鑫鑫\t鑫鑫鑫鑫\t1\ttest"]
    pairs.write_text("\n".join(rows) + "\n", encoding="utf-8")
    enc, metrics = train_encoder(pairs, None, TrainConfig(dim=16, epochs=1, min_count=1, val_fraction=0.0))
    assert "鑫" not in enc.index
    assert metrics["atec_train_pairs"] == 40


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    root = tmp_path_factory.mktemp("bert")
    chars = sorted({c for s in SCRIPTS for q in s.questions for c in q if not c.isspace()})
    (root / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n", encoding="utf-8"
    )
    tokenizer = BertTokenizer(str(root / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(chars) + 5,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(config)
    out = root / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_hf_encoder_loads_local_checkpoint_with_pooling(tiny_bert: Path) -> None:
    from models.encoders.hf import HFEncoder

    enc = load_encoder(tiny_bert)
    assert isinstance(enc, HFEncoder) and enc.pooling == "mean" and enc.dim == 32
    v = enc.encode(["我家停电了", "电费怎么这么高", ""])
    assert v.dtype == np.float32 and v.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(v[:2], axis=1), 1.0, atol=1e-5)
    (tiny_bert / "kefu_pooling.json").write_text('{"pooling": "cls", "max_length": 16}')
    try:
        cls_enc = load_encoder(tiny_bert)
        assert cls_enc.pooling == "cls" and cls_enc.max_length == 16
        assert not np.allclose(cls_enc.encode(["我家停电了"]), v[:1])
    finally:
        (tiny_bert / "kefu_pooling.json").unlink()


def test_hf_encoder_reads_sentence_transformers_pooling_and_rejects_bad_pooling(tiny_bert: Path) -> None:
    pooling_dir = tiny_bert / "1_Pooling"
    pooling_dir.mkdir()
    try:
        (pooling_dir / "config.json").write_text('{"pooling_mode_cls_token": true}')
        assert load_encoder(tiny_bert).pooling == "cls"
    finally:
        (pooling_dir / "config.json").unlink()
        pooling_dir.rmdir()
    (tiny_bert / "kefu_pooling.json").write_text('{"pooling": "max"}')
    try:
        with pytest.raises(EncoderError, match="pooling must be one of"):
            load_encoder(tiny_bert)
    finally:
        (tiny_bert / "kefu_pooling.json").unlink()


def test_hf_encoder_saves_and_reloads(tiny_bert: Path, tmp_path: Path) -> None:
    enc = load_encoder(tiny_bert)
    enc.save(tmp_path / "saved")
    again = load_encoder(tmp_path / "saved")
    np.testing.assert_allclose(enc.encode(["我要投诉"]), again.encode(["我要投诉"]), atol=1e-5)
