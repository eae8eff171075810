"""Knowledge-base lint: near-duplicate questions across scripts, thin scripts, unstated time limits."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kefu.io import KefuError
from kefu.text import normalize
from knowledge_base.schema import Script

log = logging.getLogger(__name__)

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
# A duration as scripts and published limits write it: 45分钟, 24小时, 5个工作日, 7天, 3个月.
_DURATION = re.compile(r"\d+(?:\.\d+)?\s*(?:个)?(?:分钟|小时|工作日|天|日|周|个?月)")
_CHUNK = 2048  # rows of the question-similarity matrix computed at a time (bounded memory)
_NEIGHBOURS = 20  # candidate questions of other scripts examined per question
_PRUNE_ABOVE = 5000  # questions; above this, candidates are found through rarer n-grams only


@dataclass(slots=True)
class LintIssue:
    """One finding: a code, how bad it is, the script it is about, and a message a trainer can act on."""

    code: str  # near-duplicate, duplicate-question, few-questions, time-limit-missing, time-limit-not-stated
    severity: str
    script_id: str
    message: str
    other_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.script_id}: {self.severity} [{self.code}] {self.message}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "script_id": self.script_id,
            "message": self.message,
        }
        if self.other_id is not None:
            out["other_id"] = self.other_id
        out.update(self.details)
        return out


@dataclass(slots=True)
class TimeLimitRule:
    """A published time limit: when a script promises the service (`when`), it must state one of `states`."""

    name: str
    published: str
    when: list[re.Pattern[str]]
    states: list[str]


@dataclass(slots=True)
class LintConfig:
    near_duplicate_threshold: float = 0.8
    min_questions: int = 3
    time_limits: list[TimeLimitRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise KefuError(f"the near-duplicate threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        if self.min_questions < 1:
            raise KefuError(f"min_questions must be at least 1, got {self.min_questions}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<config>") -> LintConfig:
        rules = []
        for i, raw in enumerate(data.get("time_limits") or []):
            try:
                rules.append(
                    TimeLimitRule(
                        name=str(raw["name"]),
                        published=str(raw.get("published", "")),
                        when=[re.compile(p) for p in raw["when"]],
                        states=[str(s) for s in raw["states"]],
                    )
                )
            except (KeyError, TypeError, re.error) as exc:
                raise KefuError(f"{source}: time_limits[{i}] needs name, when (regexes) and states: {exc}") from None
        return cls(
            near_duplicate_threshold=float(data.get("near_duplicate_threshold", 0.8)),
            min_questions=int(data.get("min_questions", 3)),
            time_limits=rules,
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> LintConfig:
        """The rules from a YAML file, or the bundled knowledge_base/data/lint.yaml."""
        if path is None:
            return _bundled_config()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KefuError(f"{path}: cannot read lint rules ({exc})") from None
        return cls.from_dict(data, str(path))


@lru_cache(maxsize=1)
def _bundled_config() -> LintConfig:
    text = (resources.files("knowledge_base") / "data" / "lint.yaml").read_text(encoding="utf-8")
    return LintConfig.from_dict(yaml.safe_load(text) or {}, "knowledge_base/data/lint.yaml")


def lint_scripts(
    scripts: list[Script],
    config: LintConfig | None = None,
    *,
    threshold: float | None = None,
    min_questions: int | None = None,
) -> list[LintIssue]:
    """Every finding for `scripts`, most severe first, then by script id."""
    config = config or LintConfig.load()
    if threshold is not None or min_questions is not None:
        config = LintConfig(
            near_duplicate_threshold=config.near_duplicate_threshold if threshold is None else threshold,
            min_questions=config.min_questions if min_questions is None else min_questions,
            time_limits=config.time_limits,
        )
    issues: list[LintIssue] = []
    issues += near_duplicates(scripts, config.near_duplicate_threshold)
    for script in scripts:
        issues += _question_count(script, config.min_questions)
        issues += _time_limits(script, config.time_limits)
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    issues.sort(key=lambda i: (rank.get(i.severity, 9), i.script_id, i.code))
    return issues


def _question_count(script: Script, minimum: int) -> list[LintIssue]:
    out: list[LintIssue] = []
    seen: dict[str, str] = {}
    for q in script.questions:
        key = normalize(q)
        if key in seen:
            out.append(
                LintIssue(
                    "duplicate-question",
                    "info",
                    script.id,
                    f"question {q!r} repeats {seen[key]!r}",
                    details={"question": q},
                )
            )
        else:
            seen[key] = q
    distinct = len(seen)
    if distinct < minimum:
        out.append(
            LintIssue(
                "few-questions",
                "warning",
                script.id,
                f"only {distinct} distinct question(s), at least {minimum} wanted: add how customers really ask",
                details={"questions": distinct, "min_questions": minimum},
            )
        )
    return out


def _time_limits(script: Script, rules: list[TimeLimitRule]) -> list[LintIssue]:
    out: list[LintIssue] = []
    text = script.script
    declared = script.extra.get("time_limits") or []
    if isinstance(declared, str):
        declared = [declared]
    for limit in declared if isinstance(declared, list) else []:
        missing = [d for d in _DURATION.findall(str(limit)) if re.sub(r"\s+", "", d) not in text]
        if missing:
            out.append(
                LintIssue(
                    "time-limit-not-stated",
                    "warning",
                    script.id,
                    f"time limit {limit!r} is not stated in the script text (missing {', '.join(missing)})",
                    details={"time_limit": limit, "missing": missing},
                )
            )
    haystack = f"{script.scenario}\n{text}"
    for rule in rules:
        trigger = next((m for p in rule.when if (m := p.search(haystack))), None)
        if trigger is None or any(s in text for s in rule.states):
            continue
        out.append(
            LintIssue(
                "time-limit-missing",
                "warning",
                script.id,
                f"promises {trigger.group(0)!r} but states no {rule.name} ({rule.published})",
                details={"rule": rule.name, "trigger": trigger.group(0), "published": rule.published},
            )
        )
    return out


def near_duplicates(scripts: list[Script], threshold: float = 0.8) -> list[LintIssue]:
    """Pairs of scripts with questions so alike that ranking between the scripts is ambiguous.

    Similarity of two normalised questions is the mean of their character 1–3-gram TF-IDF cosine
    (shared wording, in any order) and their edit similarity (difflib ratio: the same sentence with
    a word added or changed). One issue per pair of scripts, naming its most similar pair of
    questions and how many pairs are alike. Identical questions (after normalisation) are errors.
    """
    questions: list[str] = []
    owner: list[int] = []
    for i, s in enumerate(scripts):
        for q in s.questions:
            questions.append(q)
            owner.append(i)
    if len(scripts) < 2 or not questions:
        return []
    import numpy as np
    from scipy.sparse import diags as sparse_diags
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [normalize(q) or q for q in questions]
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, dtype=np.float32)
    matrix = vectorizer.fit_transform(texts)
    owners = np.asarray(owner)
    # The mean can reach the threshold only if the cosine is at least 2·threshold − 1 (the ratio is ≤ 1).
    floor = max(0.0, 2 * threshold - 1) - 1e-6
    best: dict[tuple[int, int], tuple[float, int, int, bool]] = {}
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    candidates = matrix
    if len(texts) > _PRUNE_ABOVE:
        # In a big knowledge base n-grams such as 电 or 怎么 occur in thousands of questions and would
        # make every pair a candidate: find candidates through the rarer n-grams only, then score
        # them on the full vectors.
        df = np.bincount(matrix.indices, minlength=matrix.shape[1])
        rare = (df <= max(50, 0.01 * len(texts))).astype(np.float32)
        candidates = (matrix @ sparse_diags(rare)).tocsr()
        candidates.eliminate_zeros()
    for start in range(0, len(texts), _CHUNK):
        block = (candidates[start : start + _CHUNK] @ candidates.T).tocoo()
        rows = block.row + start
        keep = owners[rows] < owners[block.col]
        if candidates is matrix:
            keep &= block.data >= floor
        rr, cc, vv = rows[keep], block.col[keep], block.data[keep]
        # Only each question's closest candidates: bounds the work on knowledge bases full of
        # look-alike questions, where every pair would otherwise be a candidate.
        order = np.lexsort((-vv, rr))
        rr, cc, vv = rr[order], cc[order], vv[order]
        firsts = np.r_[0, np.flatnonzero(np.diff(rr)) + 1] if len(rr) else np.zeros(0, dtype=np.int64)
        rank = np.arange(len(rr)) - np.repeat(firsts, np.diff(np.r_[firsts, len(rr)]))
        top = rank < _NEIGHBOURS
        rr, cc, vv = rr[top], cc[top], vv[top]
        if candidates is not matrix and len(rr):
            vv = np.asarray(matrix[rr].multiply(matrix[cc]).sum(axis=1)).ravel()
        for r, c, cosine in zip(rr, cc, vv, strict=True):
            if cosine < floor:
                continue
            exact = texts[r] == texts[c]
            if exact:
                score = 1.0
            else:
                matcher = SequenceMatcher(None, texts[r], texts[c])
                if (float(cosine) + matcher.quick_ratio()) / 2 < threshold:
                    continue
                score = (float(cosine) + matcher.ratio()) / 2
            if score < threshold:
                continue
            key = (int(owners[r]), int(owners[c]))
            pair_counts[key] += 1
            if key not in best or score > best[key][0]:
                best[key] = (score, int(r), int(c), exact)
    issues = []
    for (a, b), (score, r, c, exact) in best.items():
        n = pair_counts[(a, b)]
        more = f" ({n} similar question pairs)" if n > 1 else ""
        issues.append(
            LintIssue(
                "near-duplicate",
                "error" if exact else "warning",
                scripts[a].id,
                f"question {questions[r]!r} {'is the same as' if exact else 'is close to'} "
                f"{scripts[b].id} {questions[c]!r} (similarity {score:.2f}){more}: keep it in one script only",
                other_id=scripts[b].id,
                details={
                    "question": questions[r],
                    "other_question": questions[c],
                    "similarity": round(score, 4),
                    "pairs": n,
                },
            )
        )
    issues.sort(key=lambda i: -i.details["similarity"])
    return issues
