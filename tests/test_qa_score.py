"""`kefu qa score`: the output contract, bad lines, ordered multi-process output, resume, classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.io import iter_records
from qa_inspect.engine import LocalEngine, ScoreJob, chunked
from qa_inspect.engine.base import raw_chunks
from qa_inspect.scorecard import load_scorecard
from qa_inspect.scoring import Scorer
from tests.conftest import SAMPLES, write_jsonl
from tests.qa_fakes import FakeClassifier

REQUIRED = {
    "call_id": str,
    "score": float,
    "complaint_risk": float,
    "empathy": float,
    "taboo": list,
    "rule_hits": list,
    "fatal": bool,
    "review": bool,
}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", autouse=True)
def _rules_only_home(tmp_path_factory: pytest.TempPathFactory):
    """An empty $KEFU_HOME: no default classifier, so these tests score with rules only."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KEFU_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="module")
def many_calls(_rules_only_home: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 calls cycling through the bundled samples, with distinct ids and agents."""
    base = [json.loads(line) for line in (SAMPLES / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = []
    for n in range(150):
        row = json.loads(json.dumps(base[n % len(base)]))
        row["call_id"] = f"M{n:04d}"
        row["agent_id"] = f"A{n % 7}"
        rows.append(row)
    return write_jsonl(tmp_path_factory.mktemp("qa") / "many.jsonl", rows)


@pytest.fixture(scope="module")
def many_scored(many_calls: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kefu.cli import main

    out = tmp_path_factory.mktemp("qa") / "many.out.jsonl"
    with pytest.raises(SystemExit) as done:
        main(["-q", "qa", "score", str(many_calls), "-o", str(out), "--chunk-size", "8"])
    assert done.value.code in (0, None)
    return out


def test_score_contract_on_the_samples(cli, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = cli("-q", "qa", "score", str(SAMPLES / "calls.jsonl"), "-o", str(out))
    assert result.code == 0, result.err
    inputs = [json.loads(line) for line in (SAMPLES / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = read(out)
    assert [r["call_id"] for r in rows] == [c["call_id"] for c in inputs]
    for row, src in zip(rows, inputs, strict=True):
        for key, kind in REQUIRED.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert 0 <= row["score"] <= 100 and 0 <= row["complaint_risk"] <= 1 and 0 <= row["empathy"] <= 1
        assert row["scorer"] == "rules"
        assert "turns" not in row
        for key in src.keys() - {"turns"}:
            assert row[key] == src[key]
        for t in row["taboo"]:
            assert src["turns"][t["turn"]]["role"] == "agent" and t["source"] in ("lexicon", "model") and t["text"]
        for h in row["rule_hits"]:
            assert h["rule"] and h["source"]
        assert set(row["dimensions"]) == {"courtesy", "empathy", "professional_knowledge", "answering_skill"}
        assert row["review"] == bool(row["review_reason"])
    rude = next(r for r in rows if r["call_id"] == "C20260714-0002")
    assert rude["fatal"] and rude["score"] == 0 and "taboo_fatal" in rude["fatal_items"]
    assert {t["text"] for t in rude["taboo"]} >= {"说了多少遍了", "你去投诉"}
    assert rude["complaint_risk"] > 0.8 and rude["review"] and "fatal" in rude["review_reason"]
    good = rows[0]
    assert good["score"] > 90 and not good["fatal"] and good["complaint_risk"] < 0.2


def test_a_bad_line_gets_an_error_line_in_place(cli, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    good = {"call_id": "OK1", "turns": [{"role": "agent", "text": "您好，国家电网95598"}]}
    src.write_text(
        json.dumps(good, ensure_ascii=False)
        + "\n{not json\n"
        + json.dumps({"call_id": "NOTURNS"})
        + "\n"
        + json.dumps({**good, "call_id": "OK2"}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = cli("-q", "qa", "score", str(src), "-o", str(out))
    assert result.code == 0
    rows = read(out)
    assert [r.get("call_id") for r in rows] == ["OK1", None, "NOTURNS", "OK2"]
    assert "error" in rows[1] and "bad.jsonl:2" in rows[1]["source"]
    assert "turns" in rows[2]["error"] and rows[2]["review"] is False
    assert "error" not in rows[0] and "error" not in rows[3]


def test_csv_input_and_stdout_output(cli, tmp_path: Path) -> None:
    src = tmp_path / "calls.csv"
    src.write_text(
        "call_id,agent_id,role,text\nX1,A1,坐席,您好，国家电网95598\nX1,A1,客户,停电了\nX1,A1,坐席,你去投诉啊\n",
        encoding="utf-8",
    )
    result = cli("-q", "qa", "score", str(src))
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert len(rows) == 1 and rows[0]["agent_id"] == "A1" and rows[0]["fatal"] and rows[0]["review"]


def test_two_workers_keep_input_order_and_match_one(many_calls: Path, many_scored: Path) -> None:
    job = ScoreJob(chunk_size=7)
    one = list(LocalEngine(job, 1).run(chunked(iter_records(many_calls), 7)))
    two = list(LocalEngine(job, 2, max_in_flight=3).run(raw_chunks(many_calls, 7)))
    assert one == two
    assert [json.loads(line)["call_id"] for line in two] == [f"M{n:04d}" for n in range(150)]
    scored = read(many_scored)
    assert [r["call_id"] for r in scored] == [f"M{n:04d}" for n in range(150)]


def test_workers_option_gives_the_same_file(cli, many_calls: Path, many_scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "w2.jsonl"
    assert cli("-q", "qa", "score", str(many_calls), "-o", str(out), "-w", "2", "--chunk-size", "8").code == 0
    assert out.read_bytes() == many_scored.read_bytes()


def test_resume_after_a_crash(cli, many_calls: Path, many_scored: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed.jsonl"
    partial = tmp_path / "resumed.jsonl.partial"
    # A crash after 61 calls: 61 whole lines (as scored, before sampling) and half of the next one.
    lines = many_scored.read_text(encoding="utf-8").splitlines(keepends=True)
    unsampled = [
        json.dumps({**json.loads(x), "review": False, "review_reason": []}, ensure_ascii=False) + "\n" for x in lines
    ]
    partial.write_text("".join(unsampled[:61]) + unsampled[61][:40], encoding="utf-8")
    result = cli("-q", "qa", "score", str(many_calls), "-o", str(out), "--resume", "--chunk-size", "8")
    assert result.code == 0, result.err
    assert not partial.exists()
    assert read(out) == read(many_scored)


def test_resume_refuses_an_output_of_another_input(cli, many_calls: Path, tmp_path: Path) -> None:
    out = tmp_path / "other.jsonl"
    (tmp_path / "other.jsonl.partial").write_text('{"call_id":"ZZZ","score":1}\n', encoding="utf-8")
    result = cli("-q", "qa", "score", str(many_calls), "-o", str(out), "--resume")
    assert result.code == 2 and "belongs to another input" in result.err


def test_an_interrupted_job_leaves_the_previous_output_intact(
    cli, many_calls: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "keep.jsonl"
    out.write_text('{"call_id":"OLD"}\n', encoding="utf-8")
    from qa_inspect.engine import local

    def boom(self, chunks):
        yield from []
        raise KeyboardInterrupt

    monkeypatch.setattr(local.LocalEngine, "run", boom)
    result = cli("-q", "qa", "score", str(many_calls), "-o", str(out))
    assert result.code != 0
    assert out.read_text(encoding="utf-8") == '{"call_id":"OLD"}\n'


def test_scorer_with_a_classifier_reports_model_scores_and_model_taboo() -> None:
    scorer = Scorer(load_scorecard(), FakeClassifier())
    records = list(iter_records(SAMPLES / "calls.jsonl"))
    transcript = records[0].transcript
    transcript.turns[2].text = "你别墨迹了，快说地址"  # rude wording the lexicon does not list
    row = scorer.score_batch([transcript])[0]
    assert row["scorer"] == "model" and row["classifier"] == "fake-keywords"
    assert {"turn": 2, "source": "model"}.items() <= row["taboo"][0].items()
    assert "model_taboo" in row["needs_review"]
    assert "model" not in row.get("skipped_rules", [])
    # the classifier runs once per batch, not once per call
    fake = FakeClassifier()
    Scorer(load_scorecard(), fake).score_batch([r.transcript for r in records])
    assert fake.calls == 1


def test_missing_model_dir_is_a_clear_error(cli, tmp_path: Path) -> None:
    result = cli("-q", "qa", "score", str(SAMPLES / "calls.jsonl"), "--model", str(tmp_path / "nope"))
    assert result.code == 2 and "no such model directory" in result.err


def test_rules_only_is_documented_in_help(cli) -> None:
    result = cli("qa", "score", "--help")
    assert "rules" in result.out and "complaint_risk" in result.out


def test_resume_after_a_real_kill(many_calls: Path, tmp_path: Path) -> None:
    """SIGKILL a running job, then --resume: the output equals an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    rows = [json.loads(line) for line in many_calls.read_text(encoding="utf-8").splitlines()]
    big = write_jsonl(
        tmp_path / "big.jsonl", [{**r, "call_id": f"{r['call_id']}-{k}"} for k in range(12) for r in rows]
    )
    out = tmp_path / "killed.jsonl"
    partial = tmp_path / "killed.jsonl.partial"
    cmd = [sys.executable, "-m", "kefu", "-q", "qa", "score", str(big), "-o", str(out), "--chunk-size", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 20_000:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the job finished before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and partial.exists()
    done = len(partial.read_bytes().split(b"\n")) - 1
    assert 0 < done < len(rows) * 12
    subprocess.run([*cmd, "--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    full = tmp_path / "full.jsonl"
    whole = [sys.executable, "-m", "kefu", "-q", "qa", "score", str(big), "-o", str(full), "-w", "2"]
    subprocess.run(whole, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert out.read_bytes() == full.read_bytes()


TRAINED = Path(__file__).resolve().parents[1] / "var" / "models" / "classifier"


@pytest.mark.slow
@pytest.mark.skipif(not (TRAINED / "kefu_classifier.json").exists(), reason="no trained classifier in var/models")
def test_score_with_the_trained_classifier(cli, tmp_path: Path) -> None:
    out = tmp_path / "model.jsonl"
    result = cli("-q", "qa", "score", str(SAMPLES / "calls.jsonl"), "-o", str(out), "--model", str(TRAINED))
    assert result.code == 0, result.err
    rows = read(out)
    assert all(r["scorer"] == "model" and r["classifier"] for r in rows)
    rude = next(r for r in rows if r["call_id"] == "C20260714-0002")
    calm = rows[0]
    assert rude["complaint_risk"] > calm["complaint_risk"] and rude["empathy"] < calm["empathy"]
