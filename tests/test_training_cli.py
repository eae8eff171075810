"""`kefu train` commands end to end on tiny data: data → fit (baseline) → eval, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_train_help_lists_every_command(cli) -> None:
    result = cli("train", "--help")
    assert result.code == 0
    for command in ("data", "fit", "eval", "compare", "export", "pretrain"):
        assert command in result.out
    fit_help = cli("train", "fit", "--help").out
    assert "--base-model" in fit_help and "--extra" in fit_help


def test_data_fit_eval_with_the_baseline(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEFU_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    r = cli("--quiet", "train", "data", "--out", str(data), "--turns", "600", "--calls", "40")
    assert r.code == 0, r.err
    assert (data / "turns_test.jsonl").exists() and (data / "manifest.json").exists()
    model = tmp_path / "tfidf"
    r = cli("--quiet", "train", "fit", "--data", str(data), "--backend", "tfidf", "--out", str(model), "--no-stc3")
    assert r.code == 0, r.err
    r = cli("--quiet", "train", "eval", "--model", str(model), "--data", str(data), "--no-stc3",
            "--gold", str(data / "calls_val.jsonl"))
    assert r.code == 0, r.err
    assert "taboo_f1" in r.out and "Targets" in r.out
    meta = json.loads((model / "kefu_classifier.json").read_text(encoding="utf-8"))
    assert "synthetic_test" in meta["evaluation"]
    card = (model / "README.md").read_text(encoding="utf-8")
    assert "synthetic_test" in card and "| set | metric | value | 95 % interval |" in card
    r = cli("--quiet", "train", "compare", str(model), str(model), "--data", str(data), "--no-stc3",
            "--gold", str(data / "calls_val.jsonl"), "--resamples", "50")
    assert r.code == 0, r.err
    assert "| synthetic_test | taboo | f1 |" in r.out and "no clear difference" in r.out and "B better" not in r.out
    r = cli("train", "compare", str(model), str(tmp_path), "--data", str(data))
    assert r.code == 2 and "not a kefu classifier directory" in r.err
    r = cli("train", "eval", "--model", str(model), "--data", str(data), "--resamples", "-1")
    assert r.code == 2 and "--resamples must be at least 0, got -1" in r.err


def test_fit_errors_are_one_line_with_exit_code_2(cli, tmp_path: Path) -> None:
    r = cli("train", "fit", "--data", str(tmp_path))
    assert r.code == 2 and "run `kefu train data` first" in r.err
    r = cli("train", "fit", "--data", str(tmp_path), "--base-model", str(tmp_path / "nope"))
    assert r.code == 2 and "not a Hugging Face checkpoint" in r.err
    r = cli("train", "fit", "--data", str(tmp_path), "--hidden-dropout", "1")
    assert r.code == 2 and "--hidden-dropout" in r.err
    r = cli("train", "data", "--out", str(tmp_path), "--noise", "3")
    assert r.code == 2 and "--noise must be between 0 and 1" in r.err
    r = cli("train", "eval", "--model", str(tmp_path))
    assert r.code == 2 and "not a kefu classifier directory" in r.err


def test_pretrain_command_writes_a_masked_lm(cli, tmp_path: Path) -> None:
    from transformers import BertForMaskedLM

    calls = tmp_path / "calls.txt"
    calls.write_text("坐席：您好 国家电网 请问有什么可以帮您\n客户：我家停电了 什么时候来电\n坐席：请您提供户号\n",
                     encoding="utf-8")
    out = tmp_path / "pre"
    r = cli("--quiet", "train", "pretrain", str(calls), "--out", str(out), "--hidden", "32", "--layers", "1",
            "--epochs", "1")
    assert r.code == 0, r.err
    assert BertForMaskedLM.from_pretrained(str(out)).config.num_hidden_layers == 1
    assert (out / "vocab.txt").exists() and (out / "README.md").exists()
    r = cli("train", "pretrain", str(tmp_path / "missing.jsonl"))
    assert r.code == 2 and "no such file" in r.err


def test_fit_without_the_stc3_file_trains_the_call_head_on_generated_calls(
        cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A checkout without ../shared/eval (any user's) still trains; asking for a missing file is an error."""
    import training.fit

    monkeypatch.setattr(training.fit, "STC3_PATH", tmp_path / "absent" / "stc3_dialogues.jsonl")
    data = tmp_path / "data"
    assert cli("--quiet", "train", "data", "--out", str(data), "--turns", "400", "--calls", "30").code == 0
    with caplog.at_level("WARNING", logger="training.fit"):
        r = cli("--quiet", "train", "fit", "--data", str(data), "--backend", "tfidf", "--out", str(tmp_path / "m"))
    assert r.code == 0, r.err
    assert any("trains without STC-3" in rec.getMessage() for rec in caplog.records)
    meta = json.loads((tmp_path / "m" / "kefu_classifier.json").read_text(encoding="utf-8"))
    assert meta["stc3_train_used"] == 0
    assert "STC-3 train split dialogues used for the call head: 0" in (tmp_path / "m" / "README.md").read_text("utf-8")
