"""Labelled dialogue generator: pattern inventory → noisy turns and whole calls with turn and call labels."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from kefu.io import InputError

log = logging.getLogger(__name__)

PATTERN_DIR = Path(__file__).resolve().parent / "data" / "patterns"
# Patterns that only ever train: they widen the wording the model learns without changing what validation
# and test hold (those keep being drawn from PATTERN_DIR's own files alone).
TRAIN_ONLY_DIR = "train_only"
KB_SCRIPTS = Path(__file__).resolve().parents[1] / "knowledge_base" / "data" / "scripts.jsonl"
SPLITS: tuple[str, ...] = ("train", "val", "test")

_GROUP = re.compile(r"\(([^()]*)\)")
_SLOT = re.compile(r"<([a-z_]+)>")

# ASR confusions seen in 95598 transcripts: (written, heard). Applied to any label, so none gives a label away.
HOMOPHONES: tuple[tuple[str, str], ...] = (
    ("电费", "点费"),
    ("电费", "电废"),
    ("您", "你"),
    ("户号", "互号"),
    ("停电", "听电"),
    ("投诉", "头诉"),
    ("抢修", "强修"),
    ("师傅", "师父"),
    ("物业", "无业"),
    ("电表", "点表"),
    ("供电所", "供电局"),
    ("复电", "付电"),
    ("规定", "规订"),
    ("知道", "直到"),
    ("处理", "出理"),
    ("营业厅", "营业听"),
    ("工号", "攻号"),
    ("一下", "以下"),
)
# Characters that carry negation are never dropped: "我们不会当没听见" without 不 says the opposite of its label.
NEGATIONS = frozenset("不没别无未非勿甭莫")
FILLERS: tuple[str, ...] = ("嗯", "啊", "呃", "那个", "就是", "这个", "然后", "哦", "对")
# Lead-ins and tails shared by every label, so a sentence frame never predicts the label.
AGENT_LEADS: tuple[str, ...] = (
    "", "", "", "好的", "嗯", "那个", "是这样的", "我跟您说", "这样", "您好", "女士", "先生",
)
CUSTOMER_LEADS: tuple[str, ...] = ("", "", "", "喂", "我说", "那个", "你好", "哎", "同志", "就是")
TAILS: tuple[str, ...] = ("", "", "", "", "啊", "吧", "哈", "呢", "好吧", "知道吧")


@dataclass(frozen=True, slots=True)
class Pattern:
    """One hand-written template line: the unit that train/val/test splits are made of."""

    id: str
    family: str  # taboo | empathy | risk | neutral | hard_negative
    group: str  # category inside the family (推诿, 道歉, 投诉升级, …)
    role: str
    labels: tuple[tuple[str, int], ...]
    template: str
    source: str  # file:line
    train_only: bool = False  # from patterns/train_only/: always in the train split

    def realize(self, rng: random.Random, slots: dict[str, list[str]]) -> str:
        return expand(self.template, rng, slots)


@dataclass
class Inventory:
    """Every pattern plus the slot values they share."""

    patterns: list[Pattern]
    slots: dict[str, list[str]]

    def by_family(self) -> dict[str, list[Pattern]]:
        out: dict[str, list[Pattern]] = {}
        for p in self.patterns:
            out.setdefault(p.family, []).append(p)
        return out

    def digest(self) -> str:
        h = hashlib.sha256()
        for p in self.patterns:
            h.update(f"{p.id}\t{p.template}\n".encode())
        h.update(json.dumps(self.slots, ensure_ascii=False, sort_keys=True).encode())
        return h.hexdigest()[:16]


def _bucket(key: str, seed: int, val: float = 0.1, test: float = 0.2) -> str:
    x = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if x < test else "val" if x < test + val else "train"


def expand(template: str, rng: random.Random, slots: dict[str, list[str]]) -> str:
    """Pick one alternative of every (a|b) group, innermost first, then fill <slot> references."""
    text = template
    while True:
        new = _GROUP.sub(lambda m: rng.choice(m.group(1).split("|")), text, count=1)
        if new == text:
            break
        text = new
    return _SLOT.sub(lambda m: rng.choice(slots[m.group(1)]), text)


def _line_numbers(path: Path) -> dict[str, int]:
    numbers: dict[str, int] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("- "):
            numbers.setdefault(stripped[2:].strip(), i)
    return numbers


def load_inventory(directory: str | Path = PATTERN_DIR, train_only: bool = True) -> Inventory:
    """Read slots.yaml and every other *.yaml pattern file (and, with `train_only`, those of the train_only/
    subfolder); check each template for unknown slots."""
    directory = Path(directory)
    slot_file = directory / "slots.yaml"
    if not slot_file.exists():
        raise InputError(f"{slot_file}: missing (the pattern inventory needs its slot values)")
    slots = {str(k): [str(v) for v in vals] for k, vals in yaml.safe_load(slot_file.read_text("utf-8")).items()}
    patterns: list[Pattern] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name != "slots.yaml":
            patterns.extend(_read_pattern_file(path, slots, train_only=False))
    if not patterns:
        raise InputError(f"{directory}: no pattern files found")
    if train_only:
        for path in sorted((directory / TRAIN_ONLY_DIR).glob("*.yaml")):
            patterns.extend(_read_pattern_file(path, slots, train_only=True))
    ids = Counter(p.id for p in patterns)
    clashes = sorted(i for i, n in ids.items() if n > 1)
    if clashes:
        raise InputError(f"{directory}: pattern ids must be unique (file name/group/index), repeated: {clashes[:5]}")
    return Inventory(patterns, slots)


def _read_pattern_file(path: Path, slots: dict[str, list[str]], train_only: bool) -> list[Pattern]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or "family" not in doc:
        raise InputError(f"{path}: a pattern file is a mapping with family, role, labels and groups")
    lines = _line_numbers(path)
    family = doc.get("family")
    patterns: list[Pattern] = []
    for group, body in (doc.get("groups") or {}).items():
        try:
            if isinstance(body, dict):  # a group with its own role and labels (hard negatives)
                role, labels, items = body["role"], body["labels"], body["patterns"]
            else:
                role, labels, items = doc["role"], doc["labels"], body
        except KeyError as exc:
            raise InputError(f"{path}: group {group!r} has no {exc.args[0]} (nor does the file)") from exc
        for i, template in enumerate(items):
            template = str(template)
            where = f"{path.name}:{lines.get(template, 0)}"
            for name in _SLOT.findall(template):
                if name not in slots:
                    raise InputError(f"{where}: unknown slot <{name}> (slots.yaml has {sorted(slots)})")
            if template.count("(") != template.count(")"):
                raise InputError(f"{where}: unbalanced parentheses in {template!r}")
            patterns.append(
                Pattern(
                    id=f"{path.stem}/{group}/{i:03d}",
                    family=str(family),
                    group=str(group),
                    role=str(role),
                    labels=tuple(sorted((str(k), int(v)) for k, v in labels.items())),
                    template=template,
                    source=where,
                    train_only=train_only,
                )
            )
    return patterns


def split_patterns(inventory: Inventory, seed: int = 13, val: float = 0.1, test: float = 0.2) -> dict[str, str]:
    """Assign each pattern to train/val/test, stratified by (file, group), so test wording is never trained on."""
    if not (0 <= val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError(f"val and test fractions must be in [0, 1) and sum below 1, got {val} and {test}")
    groups: dict[tuple[str, str], list[Pattern]] = {}
    assignment: dict[str, str] = {p.id: "train" for p in inventory.patterns if p.train_only}
    for p in inventory.patterns:
        if p.train_only:
            continue
        groups.setdefault((p.id.split("/")[0], p.group), []).append(p)
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda p: p.id)
        random.Random(f"{seed}:{key}").shuffle(members)
        n = len(members)
        n_test = max(1, round(n * test))
        n_val = max(1, round(n * val)) if n >= 3 else 0
        for i, p in enumerate(members):
            assignment[p.id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return assignment


def add_asr_noise(text: str, rng: random.Random, level: float = 0.5) -> str:
    """Speech-recognition noise: no punctuation, fillers, homophones, dropped or doubled characters (never a
    negation, which would turn the meaning and not the label)."""
    if level <= 0:
        return text
    if rng.random() < 0.3 + 0.6 * level:
        text = re.sub(r"[，。！？、；,.!?;：:]+", lambda _: " " if rng.random() < 0.5 else "", text).strip()
    for src, dst in HOMOPHONES:
        if src in text and rng.random() < 0.25 * level:
            text = text.replace(src, dst, 1)
    chars = list(text)
    out: list[str] = []
    for ch in chars:
        r = rng.random()
        if r < 0.025 * level and len(chars) > 6 and ch not in NEGATIONS:
            continue  # dropped character
        out.append(ch)
        if r > 1 - 0.01 * level:
            out.append(ch)  # stutter
    text = "".join(out)
    for _ in range(rng.choice((0, 0, 1, 1, 2)) if rng.random() < level else 0):
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice(FILLERS) + text[pos:]
    return text


def snippet(sentence: str, rng: random.Random, limit: int = 40) -> str:
    """A run of whole clauses of `sentence`, at most `limit` characters (so a long context sentence does not
    push the labelled core out of the model's window)."""
    clauses = [c for c in re.split(r"(?<=[，,；;])", sentence) if c]
    start = rng.randrange(len(clauses))
    out = ""
    for c in clauses[start:]:
        if out and len(out) + len(c) > limit:
            break
        out += c
    return out[:limit].rstrip("，,；;。！？")


@dataclass
class TurnSample:
    """One generated turn with its labels and where it came from."""

    role: str
    text: str
    labels: dict[str, int]
    pattern: str
    family: str
    group: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "text": self.text,
            "labels": self.labels,
            "pattern": self.pattern,
            "family": self.family,
            "group": self.group,
        }


@dataclass
class Generator:
    """Builds turns and calls from the patterns of one split."""

    inventory: Inventory
    split_of: dict[str, str]
    split: str
    seed: int = 0
    noise: float = 0.5
    topics: list[str] = field(default_factory=list)
    scripts: list[tuple[str, str]] = field(default_factory=list)
    # Share of turns whose labelled core is embedded in a label-free knowledge-base sentence: a standard
    # agent-script sentence without an empathy cue (agents) or a calm customer question (customers).
    # Real agent turns are long and mostly procedural; this teaches that the procedure carries no label.
    context: float = 0.6
    context_chars: int = 40  # longest context snippet; turns are read up to max_turn_length (126) characters
    # Chance that a train-split pick comes from the train-only patterns of its family (where it has some). Off by
    # default: measured 2026-12-07 (docs/classifier.md), they lowered generated validation taboo AUC by 0.001–0.005
    # and cut false alarms on held-out colloquial acceptable speech only in one fold of two.
    train_only_share: float = 0.0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not 0 <= self.train_only_share <= 1:
            raise ValueError(f"train_only_share must be between 0 and 1, got {self.train_only_share}")
        self.rng = random.Random(f"{self.seed}:{self.split}")
        self.pool: dict[tuple[str, str], list[Pattern]] = {}
        self.train_only_pool: dict[tuple[str, str], list[Pattern]] = {}
        # With share 0 the train-only patterns stay out of both pools: the same draws as an inventory without them.
        for p in self.inventory.patterns:
            if self.split_of[p.id] == self.split and (self.train_only_share > 0 or not p.train_only):
                pool = self.train_only_pool if p.train_only else self.pool
                pool.setdefault((p.family, p.role), []).append(p)
        for key, extra in self.train_only_pool.items():
            self.pool.setdefault(key, extra)  # a family only the train-only files have
        # Script sentences split by scenario id, the same way as patterns: test scenarios are never trained on.
        self.script_pool = [s for s in self.scripts if _bucket(s[0], self.seed) == self.split]
        cues = tuple(self.inventory.slots.get("empathy_cues", ()))
        self.plain_scripts = [s for _, s in self.script_pool if not any(c in s for c in cues)]
        # Topics (calm customer questions) are split by their text, like scripts by scenario.
        self.topic_pool = [t for t in self.topics if _bucket(t, self.seed) == self.split]
        for key in (("taboo", "agent"), ("empathy", "agent"), ("risk", "customer"), ("neutral", "agent")):
            if not self.pool.get(key):
                raise InputError(f"no {key[0]} patterns for {key[1]} in the {self.split} split")

    def _pick(self, family: str, role: str) -> Pattern:
        extra = self.train_only_pool.get((family, role))
        if extra and self.rng.random() < self.train_only_share:
            return self.rng.choice(extra)
        return self.rng.choice(self.pool[(family, role)])

    def _clause(self, family: str, role: str) -> tuple[str, Pattern]:
        p = self._pick(family, role)
        return p.realize(self.rng, self.inventory.slots), p

    def turn(self, role: str, family: str) -> TurnSample:
        """One turn whose core comes from `family`, wrapped in label-free neutral context."""
        rng = self.rng
        core, p = self._clause(family, role)
        parts = [core]
        # Neutral clauses before/after the core: same frames for every label.
        if family != "neutral" and rng.random() < 0.45:
            extra, _ = self._clause("neutral", role)
            parts.insert(rng.randrange(2), extra)
        elif family == "neutral" and rng.random() < 0.3:
            extra, _ = self._clause("neutral", role)
            parts.append(extra)
        if role == "agent" and family == "empathy" and rng.random() < 0.3:
            extra, _ = self._clause("empathy", role)  # empathy often comes in two moves
            parts.append(extra)
        context_pool = self.plain_scripts if role == "agent" else self.topic_pool
        if context_pool and rng.random() < self.context:
            for _ in range(1 if rng.random() < 0.7 else 2):
                parts.insert(rng.randrange(len(parts) + 1), snippet(rng.choice(context_pool), rng, self.context_chars))
        lead = rng.choice(AGENT_LEADS if role == "agent" else CUSTOMER_LEADS)
        text = (lead + "，" if lead else "") + "，".join(parts) + rng.choice(TAILS)
        if rng.random() < 0.5:
            text += rng.choice(("。", "！", "？", "")) if role == "customer" else "。"
        text = add_asr_noise(text, rng, self.noise * rng.uniform(0.3, 1.5))
        labels = dict(p.labels)
        if role == "agent":
            labels = {"taboo": labels.get("taboo", 0), "empathy": labels.get("empathy", 0)}
        else:
            labels = {"risk": labels.get("risk", 0)}
        return TurnSample(role, text, labels, p.id, p.family, p.group)

    def turns(self, n: int) -> Iterator[TurnSample]:
        """A balanced stream of agent and customer turns, hard negatives included."""
        agent_mix = (("taboo", 0.3), ("empathy", 0.3), ("neutral", 0.28), ("hard_negative", 0.12), ("script", 0.12))
        customer_mix = (("risk", 0.45), ("neutral", 0.4), ("hard_negative", 0.15))
        for _ in range(n):
            role = "agent" if self.rng.random() < 0.6 else "customer"
            mix = agent_mix if role == "agent" else customer_mix
            families = [f for f, _ in mix if self.pool.get((f, role)) or (f == "script" and self.script_pool)]
            weights = [w for f, w in mix if f in families]
            family = self.rng.choices(families, weights)[0]
            yield self.script_turn() if family == "script" else self.turn(role, family)

    def script_turn(self) -> TurnSample:
        """A standard-script sentence as an agent turn: taboo 0; empathy 0 unless it has an empathy cue."""
        sid, sentence = self.rng.choice(self.script_pool)
        text = add_asr_noise(sentence, self.rng, self.noise * self.rng.uniform(0.3, 1.5))
        labels = {"taboo": 0}
        if not any(cue in sentence for cue in self.inventory.slots.get("empathy_cues", ())):
            labels["empathy"] = 0  # a polite procedural sentence: politeness alone is not empathy
        return TurnSample("agent", text, labels, f"kb/{sid}", "script", "script")

    # Call plans and how often each is drawn.
    PLANS: ClassVar[dict[str, float]] = {
        "calm": 0.22,
        "not_complaint": 0.1,
        "angry_calmed": 0.2,
        "angry_unresolved": 0.15,
        "taboo_escalation": 0.13,
        "taboo_no_risk": 0.1,
        "angry_still_escalates": 0.1,
    }

    def call(self, call_id: str) -> dict[str, Any]:
        """A whole call with turn labels and the call-level complaint_risk / empathy / taboo labels."""
        rng = self.rng
        plan = rng.choices(list(self.PLANS), list(self.PLANS.values()))[0]
        n = rng.randint(2, 4)
        turns: list[TurnSample] = [self.turn("agent", "neutral")]
        topic = rng.choice(self.topics) if self.topics else None
        first = self.turn("customer", "neutral")
        if topic and rng.random() < 0.6:
            first = TurnSample("customer", add_asr_noise(topic, rng, self.noise), {"risk": 0}, "kb", "neutral", "kb")
        turns.append(first)
        for i in range(n):
            last = i == n - 1
            if plan == "calm":
                c, a = "neutral", "neutral" if rng.random() < 0.8 else "hard_negative"
            elif plan == "not_complaint":
                c, a = ("hard_negative" if i == 0 or rng.random() < 0.4 else "neutral"), "neutral"
            elif plan == "angry_calmed":
                c = "risk" if i < max(1, n - 1) else "hard_negative"
                a = "empathy" if rng.random() < 0.75 else "neutral"
            elif plan == "angry_unresolved":
                c, a = "risk" if rng.random() < 0.8 or last else "neutral", "neutral"
            elif plan == "taboo_escalation":
                c = "risk" if i > 0 or rng.random() < 0.5 else "neutral"
                a = "taboo" if rng.random() < 0.6 or i == 0 else "neutral"
            elif plan == "taboo_no_risk":
                c, a = "neutral", "taboo" if i == 0 or rng.random() < 0.4 else "neutral"
            else:  # angry_still_escalates: empathy offered, yet the customer ends still escalating
                c, a = "risk", "empathy" if rng.random() < 0.6 else "neutral"
            if self.pool.get((c, "customer")) is None:
                c = "neutral"
            if i > 0 or plan not in ("angry_calmed", "angry_unresolved", "angry_still_escalates"):
                turns.append(self.turn("customer", c))
            else:
                turns[-1] = self.turn("customer", "risk")
            turns.append(self.turn("agent", a if self.pool.get((a, "agent")) else "neutral"))
        if plan == "angry_calmed":
            calm = "hard_negative" if self.pool.get(("hard_negative", "customer")) else "neutral"
            turns.append(self.turn("customer", calm))
        elif plan in ("angry_still_escalates", "taboo_escalation", "angry_unresolved"):
            turns.append(self.turn("customer", "risk"))
        else:
            turns.append(self.turn("customer", "neutral"))
        turns.append(self.turn("agent", "neutral"))
        labels = call_labels(turns)
        return {
            "call_id": call_id,
            "channel": "voice",
            "split": self.split,
            "plan": plan,
            "turns": [{"role": t.role, "text": t.text, "labels": t.labels, "pattern": t.pattern} for t in turns],
            "labels": labels,
        }


def call_labels(turns: Sequence[TurnSample]) -> dict[str, int]:
    """Call labels from turn labels and their order (the same rules the gold set's annotators follow).

    complaint_risk: the customer showed risk and either the agent used a taboo, showed no empathy, or the
    customer's last word was still a risk signal. empathy: no taboo, and empathy was shown wherever the
    customer showed risk.
    """
    risk = [t.labels.get("risk", 0) for t in turns if t.role == "customer"]
    taboo = any(t.labels.get("taboo", 0) for t in turns if t.role == "agent")
    empathy = any(t.labels.get("empathy", 0) for t in turns if t.role == "agent")
    any_risk = any(risk)
    complaint = int(any_risk and (taboo or not empathy or bool(risk and risk[-1])))
    return {"complaint_risk": complaint, "empathy": int(not taboo and (empathy or not any_risk)), "taboo": int(taboo)}


def load_topics(path: Path = KB_SCRIPTS) -> list[str]:
    """Calm customer questions from the knowledge base's scenario scripts (empty when the KB file is absent)."""
    if not path.exists():
        return []
    topics: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            # Sensitive and complaint scenarios hold angry questions: as unlabelled topics they would be noise.
            if "敏感场景" in (item.get("tags") or []) or "投诉" in str(item.get("category", "")):
                continue
            topics.extend(str(q) for q in item.get("questions", []) if q)
    return topics


def load_script_sentences(path: Path = KB_SCRIPTS) -> list[tuple[str, str]]:
    """(scenario id, sentence) pairs from the knowledge base's standard agent scripts.

    Standard scripts are never taboo but may or may not show empathy, so the turns made from them carry
    the taboo label only (the empathy loss is masked). They widen the agents' ordinary vocabulary.
    """
    if not path.exists():
        return []
    out: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        for sentence in re.split(r"(?<=[。！？；])", str(item.get("script", ""))):
            sentence = sentence.strip()
            if 6 <= len(sentence) <= 80:
                out.append((str(item.get("id", "")), sentence))
    return out


def stats(inventory: Inventory, split_of: dict[str, str]) -> dict[str, Any]:
    """Pattern counts per family and split, for the manifest and the model card."""
    counts: Counter[tuple[str, str]] = Counter((p.family, split_of[p.id]) for p in inventory.patterns)
    families = sorted({p.family for p in inventory.patterns})
    return {f: {s: counts[(f, s)] for s in SPLITS} | {"total": sum(counts[(f, s)] for s in SPLITS)} for f in families}
