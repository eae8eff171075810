"""Sampling for human review: policy parts, reasons, stratified quotas, determinism under a seed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from qa_inspect.sampling import SamplingError, SamplingPolicy, period_key, sample_file

NONE = {
    "fatal": False,
    "needs_review": False,
    "risk_threshold": None,
    "top_percent": 0,
    "per_agent": 0,
    "baseline_percent": 0,
}


def scored_file(path: Path, n: int = 400) -> Path:
    """Synthetic scored lines: agents A0–A9, two weeks, risk rising with the index, a few fatal calls."""
    lines = []
    for i in range(n):
        row = {
            "call_id": f"S{i:04d}",
            "agent_id": f"A{i % 10}",
            "date": "2026-07-06" if i < n // 2 else "2026-07-14",
            "score": 80.0,
            "fatal": i % 97 == 5,
            "complaint_risk": round(i / n, 4),
            "empathy": 0.5,
            "needs_review": ["repeated_demand"] if i == 11 else [],
            "review": False,
            "review_reason": [],
        }
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    lines.insert(3, json.dumps({"call_id": "BAD", "error": "invalid JSON", "review": False, "review_reason": []}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def picks(path: Path) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        assert r["review"] == bool(r["review_reason"])
    return {r["call_id"]: r["review_reason"] for r in rows if r["review"]}


def test_each_part_of_the_policy_and_its_reason(tmp_path: Path) -> None:
    src = scored_file(tmp_path / "s.jsonl")
    out = tmp_path / "o.jsonl"
    sample_file(src, SamplingPolicy(**{**NONE, "fatal": True}), out)
    assert set(picks(out)) == {"S0005", "S0102", "S0199", "S0296", "S0393"}
    assert all(r == ["fatal"] for r in picks(out).values())
    sample_file(src, SamplingPolicy(**{**NONE, "needs_review": True}), out)
    assert picks(out) == {"S0011": ["item:repeated_demand"]}
    sample_file(src, SamplingPolicy(**{**NONE, "risk_threshold": 0.99}), out)
    assert set(picks(out)) == {f"S{i:04d}" for i in range(396, 400)}
    sample_file(src, SamplingPolicy(**{**NONE, "top_percent": 2.0}), out)
    assert set(picks(out)) == {f"S{i:04d}" for i in range(392, 400)}  # 2% of 400 scored calls, highest risk
    assert picks(out)["S0399"] == ["top2%_risk"]


def test_random_baseline_is_about_p_percent_and_deterministic(tmp_path: Path) -> None:
    src = scored_file(tmp_path / "s.jsonl", 2000)
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    sample_file(src, SamplingPolicy(**{**NONE, "baseline_percent": 5.0, "seed": 7}), a)
    sample_file(src, SamplingPolicy(**{**NONE, "baseline_percent": 5.0, "seed": 7}), b)
    sample_file(src, SamplingPolicy(**{**NONE, "baseline_percent": 5.0, "seed": 8}), c)
    assert a.read_bytes() == b.read_bytes()
    assert picks(a) != picks(c)
    assert 60 <= len(picks(a)) <= 140 and all(r == ["random_baseline"] for r in picks(a).values())


def test_per_agent_quota_is_stratified_by_period(tmp_path: Path) -> None:
    src = scored_file(tmp_path / "s.jsonl")
    out = tmp_path / "o.jsonl"
    sample_file(src, SamplingPolicy(**{**NONE, "per_agent": 2, "period": "week"}), out)
    chosen = picks(out)
    rows = {json.loads(x)["call_id"]: json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()}
    per = Counter((rows[c]["agent_id"], period_key(rows[c]["date"], "week")) for c in chosen)
    assert len(per) == 20 and set(per.values()) == {2}  # 10 agents × 2 weeks, exactly K each
    assert all(r == ["agent_quota"] for r in chosen.values())


def test_calls_picked_for_other_reasons_count_towards_the_quota(tmp_path: Path) -> None:
    src = scored_file(tmp_path / "s.jsonl")
    out = tmp_path / "o.jsonl"
    sample_file(src, SamplingPolicy(**{**NONE, "per_agent": 1, "period": "all", "top_percent": 2.5}), out)
    chosen = picks(out)
    rows = {json.loads(x)["call_id"]: json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()}
    per = Counter(rows[c]["agent_id"] for c in chosen)
    assert set(per) == {f"A{i}" for i in range(10)}  # every agent has at least one
    # the top 10 calls (S0390–S0399) cover every agent already: no quota picks are needed
    assert not any("agent_quota" in r for r in chosen.values())


def test_full_policy_in_place_rewrite_and_summary(tmp_path: Path, cli) -> None:
    src = scored_file(tmp_path / "s.jsonl")
    result = cli(
        "-q", "qa", "sample", str(src), "--seed", "3", "--top-percent", "1", "--per-agent", "1", "--baseline", "2"
    )
    assert result.code == 0 and "picked for review" in result.err
    chosen = picks(src)
    kinds = Counter(r.split(":")[0] for reasons in chosen.values() for r in reasons)
    assert {"fatal", "item", "top1%_risk", "agent_quota", "random_baseline"} <= set(kinds)
    again = tmp_path / "again.jsonl"
    assert (
        cli(
            "-q",
            "qa",
            "sample",
            str(src),
            "-o",
            str(again),
            "--seed",
            "3",
            "--top-percent",
            "1",
            "--per-agent",
            "1",
            "--baseline",
            "2",
        ).code
        == 0
    )
    assert again.read_bytes() == src.read_bytes()  # resampling a sampled file is stable
    assert json.loads(src.read_text(encoding="utf-8").splitlines()[3])["review"] is False  # the error line


def test_policy_file_and_validation(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("top_percent: 3\nper_agent: 2\nperiod: month\nseed: 11\n", encoding="utf-8")
    loaded = SamplingPolicy.load(policy)
    assert (loaded.top_percent, loaded.per_agent, loaded.period, loaded.seed) == (3, 2, "month", 11)
    policy.write_text("top_percent: 300\n", encoding="utf-8")
    with pytest.raises(SamplingError, match="top_percent must be between 0 and 100"):
        SamplingPolicy.load(policy)
    policy.write_text("quota: 3\n", encoding="utf-8")
    with pytest.raises(SamplingError, match="unknown sampling option"):
        SamplingPolicy.load(policy)


def test_period_keys() -> None:
    assert period_key("2026-07-14", "week") == "2026-W29"
    assert period_key("2026-07-14T10:00:00", "month") == "2026-07"
    assert period_key(None, "day") == "unknown"
