"""Turn and call datasets: generated splits, extra reviewed turns, the STC-3 loader and the gold set."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from kefu.io import InputError, JsonlWriter
from kefu.progress import progress
from kefu.schemas import normalize_role
from kefu.text import normalize
from training.generator import (
    SPLITS,
    Generator,
    load_inventory,
    load_script_sentences,
    load_topics,
    split_patterns,
    stats,
)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
STC3_PATH = REPO.parent / "shared" / "eval" / "stc3_dialogues.jsonl"
GOLD_PATH = REPO / "training" / "data" / "gold_calls.jsonl"
# Hand-written labelled calls, written without seeing the gold set (docs/labelling.md). The dev sets train the
# default model; the threshold set only chooses the decision thresholds and is never trained on.
DEV_PATH = REPO / "training" / "data" / "dev_calls.jsonl"
# The hand-written sets that train by default: dev_calls.jsonl, dev2_calls.jsonl … dev9_calls.jsonl.
DEV_PATHS = (DEV_PATH, *(REPO / "training" / "data" / f"dev{n}_calls.jsonl" for n in range(2, 10)))
THRESHOLD_CALLS_PATH = REPO / "training" / "data" / "threshold_calls.jsonl"
# Hand-written contrast groups (docs/labelling.md): agent turns on one situation whose labels differ by a few words
# (a brush-off and the reassurance that negates it, courtesy wrapped around a taboo). Train the default model.
CONTRAST_PATH = REPO / "training" / "data" / "contrast_turns.jsonl"
LEXICON_PATH = REPO / "qa_inspect" / "data" / "taboo_lexicon.csv"
EXAMPLES_PATH = REPO / "qa_inspect" / "data" / "taboo_examples.csv"
# Lexicon categories outside the classifier's taboo label (leaks and unauthorised promises are rule-only).
NOT_TABOO_SPEECH = frozenset({"泄露与违规承诺"})
TURN_LABEL_NAMES: dict[str, tuple[str, ...]] = {"agent": ("taboo", "empathy"), "customer": ("risk",)}


@dataclass(slots=True)
class TurnExample:
    """One labelled turn. Labels absent for the role are simply missing (masked out of the loss)."""

    role: str
    text: str
    labels: dict[str, int]
    pattern: str = ""
    source: str = ""
    family: str = ""  # generated turns: the pattern family (taboo, empathy, neutral, hard_negative, script…)
    group: str = ""  # generated turns: the pattern group (a taboo category such as 不耐烦2, 礼貌外壳推诿)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{i}: not valid JSON: {exc.msg}") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path}:{i}: each line must be a JSON object, got {type(row).__name__}")
            yield i, row


def generate(out_dir: str | Path, n_turns: int = 36000, n_calls: int = 3000, seed: int = 13, noise: float = 0.5,
             quiet: bool | None = None, train_only_share: float = 0.0) -> dict[str, Any]:
    """Write turns_{split}.jsonl and calls_{split}.jsonl for train/val/test plus manifest.json; return the manifest.

    Val and test get a fifth of the train size each; their patterns are disjoint from train's. With
    `train_only_share` > 0 the train split also draws that share of each family's picks from patterns/train_only/;
    val and test are the same either way.
    """
    if n_turns < 10 or n_calls < 10:
        raise InputError(f"need at least 10 turns and 10 calls, got {n_turns} and {n_calls}")
    out = Path(out_dir)
    if not 0 <= train_only_share <= 1:
        raise InputError(f"the train-only share must be between 0 and 1, got {train_only_share}")
    inventory = load_inventory(train_only=train_only_share > 0)
    split_of = split_patterns(inventory, seed=seed)
    topics = load_topics()
    scripts = load_script_sentences()
    sizes = {"train": 1.0, "val": 0.2, "test": 0.25}
    files: dict[str, str] = {}
    for split in SPLITS:
        gen = Generator(inventory, split_of, split, seed=seed, noise=noise, topics=topics, scripts=scripts,
                        train_only_share=train_only_share)
        nt, nc = max(10, int(n_turns * sizes[split])), max(10, int(n_calls * sizes[split]))
        with JsonlWriter(out / f"turns_{split}.jsonl") as w:
            for t in progress(gen.turns(nt), desc=f"turns {split}", unit="turn", total=nt, quiet=quiet):
                w.write(t.to_dict())
        with JsonlWriter(out / f"calls_{split}.jsonl") as w:
            for i in progress(range(nc), desc=f"calls {split}", unit="call", total=nc, quiet=quiet):
                w.write(gen.call(f"SYN-{split}-{i:05d}"))
        files[split] = f"turns_{split}.jsonl, calls_{split}.jsonl"
    manifest = {
        "seed": seed,
        "noise": noise,
        "inventory_digest": inventory.digest(),
        "patterns": stats(inventory, split_of),
        "train_only_patterns": dict(Counter(p.family for p in inventory.patterns if p.train_only)),
        "train_only_share": train_only_share,
        "topics_from_kb": len(topics),
        "script_sentences_from_kb": len(scripts),
        "files": files,
        "pattern_split": split_of,
    }
    manifest["data_hash"] = data_hash(out)
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def data_hash(directory: str | Path) -> str:
    """sha256 over the generated data files (the model card records it)."""
    h = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.jsonl")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def read_turns(path: str | Path) -> list[TurnExample]:
    """Read generated turns or extra labelled turns: {"role", "text", "labels": {...}} per line."""
    path = Path(path)
    out: list[TurnExample] = []
    for i, row in _read_jsonl(path):
        role = normalize_role(row.get("role"))
        if role is None:
            raise InputError(f"{path}:{i}: role must be agent or customer (or 坐席/客户), got {row.get('role')!r}")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}:{i}: text must be a non-empty string")
        labels = row.get("labels")
        if not isinstance(labels, dict):
            raise InputError(f"{path}:{i}: labels must be an object such as {{\"taboo\": 1}}, got {labels!r}")
        allowed = TURN_LABEL_NAMES[role]
        clean: dict[str, int] = {}
        for key, value in labels.items():
            if key not in allowed:
                if key in ("taboo_category",):
                    continue
                raise InputError(f"{path}:{i}: label {key!r} does not apply to {role} turns (allowed: {allowed})")
            if value not in (0, 1, True, False):
                raise InputError(f"{path}:{i}: label {key!r} must be 0 or 1, got {value!r}")
            clean[key] = int(value)
        if not clean:
            raise InputError(f"{path}:{i}: no usable label for a {role} turn (expected one of {allowed})")
        out.append(TurnExample(role, text, clean, str(row.get("pattern", "")), f"{path.name}:{i}",
                               str(row.get("family", "")), str(row.get("group", ""))))
    return out


def read_calls(path: str | Path) -> list[dict[str, Any]]:
    """Calls in the transcript format with turn labels and call labels (generated or gold)."""
    path = Path(path)
    calls = []
    for i, row in _read_jsonl(path):
        if "turns" not in row or "call_id" not in row:
            raise InputError(f"{path}:{i}: a call needs call_id and turns")
        for t in row["turns"]:
            t["role"] = normalize_role(t.get("role")) or t.get("role")
        calls.append(row)
    return calls


def turns_of_calls(calls: Iterable[dict[str, Any]]) -> list[TurnExample]:
    """The labelled turns inside calls (turns without labels are skipped)."""
    out = []
    for call in calls:
        for j, t in enumerate(call["turns"]):
            labels = {k: int(v) for k, v in (t.get("labels") or {}).items() if k in TURN_LABEL_NAMES.get(t["role"], ())}
            if labels:
                out.append(TurnExample(t["role"], t["text"], labels, t.get("pattern", ""), f"{call['call_id']}#{j}"))
    return out


def load_stc3(split: str, path: str | Path = STC3_PATH) -> list[dict[str, Any]]:
    """STC-3 dialogues of one split. `test` is for evaluation only; the trainer refuses to use it."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    return [row for _, row in _read_jsonl(Path(path)) if row.get("split") == split]


def load_gold(path: str | Path = GOLD_PATH) -> list[dict[str, Any]]:
    """The hand-written gold calls: evaluation only, never training or tuning."""
    return read_calls(path)


@lru_cache(maxsize=2)
def lexicon_phrases(path: str = str(LEXICON_PATH)) -> tuple[str, ...]:
    """Normalised taboo lexicon phrases (empty when the QA lexicon is not there)."""
    p = Path(path)
    if not p.exists():
        log.warning("%s not found: lexicon split of the taboo report is skipped", p)
        return ()
    with open(p, encoding="utf-8", newline="") as fh:
        return tuple(sorted({normalize(row["phrase"]) for row in csv.DictReader(fh) if row.get("phrase")}))


def in_lexicon(text: str) -> bool:
    """True when any lexicon phrase occurs in the normalised text (the wording a list-based rule could catch)."""
    norm = normalize(text)
    return any(p and p in norm for p in lexicon_phrases())


def lexicon_turns(hosts: list[TurnExample], seed: int = 13, noise: float = 0.5,
                  lexicon: Path = LEXICON_PATH, examples: Path = EXAMPLES_PATH) -> list[TurnExample]:
    """What QA staff already know, as training turns: every taboo-lexicon phrase (taboo 1) and every
    rule-engine example sentence (rude 1, polite 0), alone and inside a plain agent turn from `hosts`
    (turns labelled taboo 0 and empathy 0), with speech-recognition noise. Empty when the files are absent."""
    from qa_inspect.lexicon import Resources
    from training.generator import add_asr_noise

    if not lexicon.exists() or not examples.exists():
        log.warning("%s or %s not found: no lexicon turns", lexicon, examples)
        return []
    rng = random.Random(f"lexicon:{seed}")
    plain = [t.text for t in hosts if t.role == "agent" and t.labels.get("taboo") == 0
             and t.labels.get("empathy") == 0]
    if not plain:
        raise InputError("lexicon turns need plain agent turns (taboo 0, empathy 0) to embed the phrases in")

    def variants(text: str, embedded: int) -> list[str]:
        out = [text]
        for _ in range(embedded):
            host = rng.choice(plain)
            cuts = [i for i, ch in enumerate(host) if ch in " ，,。"] or [len(host)]
            cut = rng.choice(cuts)
            out.append(f"{host[:cut]} {text} {host[cut:]}".strip())
        return [add_asr_noise(v, rng, noise * rng.uniform(0.3, 1.5)) for v in out]

    turns: list[TurnExample] = []
    # The QA engine's own loader: the same validation (and file:line errors) as the rules that use the lexicon.
    for entry in Resources(lexicon_path=lexicon).taboo_entries:
        if entry.category not in NOT_TABOO_SPEECH:
            for v in variants(entry.phrase, 2):
                turns.append(TurnExample("agent", v, {"taboo": 1, "empathy": 0}, f"lexicon/{entry.id}"))
    with open(examples, encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh), 2):
            if row.get("text") and row.get("expected_taboo") in ("0", "1"):
                # Empathy is not labelled in the examples: polite sentences may or may not show it.
                for v in variants(row["text"], 1):
                    turns.append(TurnExample("agent", v, {"taboo": int(row["expected_taboo"])}, f"examples/{i}"))
    return turns


def label_counts(turns: Iterable[TurnExample]) -> dict[str, dict[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for t in turns:
        for k, v in t.labels.items():
            counts[(k, v)] += 1
    names = sorted({k for k, _ in counts})
    return {k: {"0": counts[(k, 0)], "1": counts[(k, 1)]} for k in names}
