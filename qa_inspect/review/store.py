"""The review store: sampled calls, their hits, verdicts, manual scores, appeals and decisions in SQLite."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kefu.io import InputError, KefuError, iter_records
from qa_inspect.report import as_number, iter_score_lines

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
OUTCOMES = ("upheld", "overturned", "adjusted")
TURN_LABELS: dict[str, str] = {"taboo": "agent", "empathy": "agent", "risk": "customer"}
REVIEWER_ENV = "KEFU_REVIEWER"
# Rule types whose hits say the agent failed to give the response a scenario script gives (an
# apology after a complaint, a time limit …). Missing standard phrases (must_say: opening, closing,
# job number) are not scenario scripts and stay plain rule hits.
MISSING_TYPES = ("anchor_response",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT, date TEXT, channel TEXT,
    score REAL, fatal INTEGER NOT NULL DEFAULT 0, complaint_risk REAL, empathy REAL,
    review INTEGER NOT NULL DEFAULT 0, review_reason TEXT NOT NULL DEFAULT '[]',
    result TEXT NOT NULL,
    turns TEXT,
    source TEXT, loaded_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_agent ON calls(agent_id);
CREATE TABLE IF NOT EXISTS hits (
    hit_id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    hkey TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('taboo', 'missing', 'rule')),
    rule TEXT NOT NULL, type TEXT, source TEXT, turn INTEGER, text TEXT, detail TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    UNIQUE (call_id, hkey), UNIQUE (call_id, ordinal)
);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY,
    hit_id INTEGER NOT NULL REFERENCES hits(hit_id) ON DELETE CASCADE,
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)),
    reviewer TEXT NOT NULL, note TEXT, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_hit ON verdicts(hit_id);
CREATE TABLE IF NOT EXISTS manual_scores (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    score REAL NOT NULL CHECK (score BETWEEN 0 AND 100),
    fatal INTEGER CHECK (fatal IN (0, 1)),
    reviewer TEXT NOT NULL, note TEXT, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turn_labels (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    turn INTEGER NOT NULL, label TEXT NOT NULL, value INTEGER NOT NULL CHECK (value IN (0, 1)),
    reviewer TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS appeals (
    appeal_id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    agent_id TEXT, reason TEXT NOT NULL, filed_by TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'decided')),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(call_id) ON DELETE CASCADE,
    appeal_id INTEGER REFERENCES appeals(appeal_id),
    outcome TEXT NOT NULL CHECK (outcome IN ('upheld', 'overturned', 'adjusted')),
    final_score REAL, reviewer TEXT NOT NULL, note TEXT, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    hit_id INTEGER NOT NULL REFERENCES hits(hit_id) ON DELETE CASCADE,
    rank INTEGER NOT NULL, script_id TEXT NOT NULL, scenario TEXT, script TEXT, score REAL,
    query TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (hit_id, rank)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    call_id TEXT, detail TEXT
);
"""


class ReviewError(KefuError):
    """A review action cannot be done (unknown call or hit, bad value); the message says why."""


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def default_reviewer() -> str:
    """$KEFU_REVIEWER, else the login name."""
    name = os.environ.get(REVIEWER_ENV)
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def hit_kind(hit: dict[str, Any]) -> str:
    """taboo (a service taboo), missing (a scenario response not given) or rule (anything else)."""
    rule = str(hit.get("rule") or "")
    if hit.get("type") == "taboo_lexicon" or "phrase_id" in hit or "taboo" in rule:
        return "taboo"
    if hit.get("type") == "must_say":
        return "rule"
    if hit.get("type") in MISSING_TYPES or "expected" in hit or rule.startswith("no_"):
        return "missing"
    return "rule"


def _hits_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Rule hits of a score line, plus taboo entries that no rule hit already covers (model-only taboo)."""
    hits = [dict(h) for h in obj.get("rule_hits") or [] if isinstance(h, dict) and h.get("rule") is not None]
    covered = {(h.get("turn"), tuple(h.get("span") or ())) for h in hits if hit_kind(h) == "taboo"}
    covered_turns = {h.get("turn") for h in hits if hit_kind(h) == "taboo"}
    for t in obj.get("taboo") or []:
        if not isinstance(t, dict):
            continue
        key = (t.get("turn"), tuple(t.get("span") or ()))
        if key in covered or (t.get("source") == "model" and t.get("turn") in covered_turns):
            continue
        hits.append({**t, "rule": f"taboo:{t.get('source') or 'lexicon'}", "type": "taboo"})
    return hits


def _hkey(h: dict[str, Any]) -> str:
    return _dumps([h.get("rule"), h.get("turn"), h.get("span"), h.get("text")])


@dataclass
class LoadSummary:
    """What one `load` did; loading the same file twice adds nothing the second time."""

    lines: int = 0
    errors: int = 0
    not_sampled: int = 0
    calls_new: int = 0
    calls_updated: int = 0
    hits_new: int = 0
    hits_retired: int = 0
    transcripts: int = 0
    missing_transcripts: int = 0

    def describe(self) -> str:
        return (
            f"{self.calls_new} new and {self.calls_updated} updated calls, {self.hits_new} new hits"
            f" ({self.hits_retired} retired); skipped {self.not_sampled} calls not picked for review and"
            f" {self.errors} error lines; turns attached to {self.transcripts} calls"
            + (f", {self.missing_transcripts} loaded calls have no transcript" if self.missing_transcripts else "")
        )


class ReviewStore:
    """One SQLite file (WAL mode) holding the review workflow; every action is one transaction and audited."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise ReviewError(f"{self.path}: no review store; load calls first with `kefu qa review load OUT.jsonl`")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=10.0)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            with self.conn:
                self.conn.executescript(_SCHEMA)
                row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row["value"]) > SCHEMA_VERSION:
                    raise ReviewError(
                        f"{self.path}: schema version {row['value']} is newer than this kefu ({SCHEMA_VERSION})"
                    )
        except sqlite3.DatabaseError as exc:
            raise ReviewError(f"{self.path}: not a usable review store ({exc})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _audit(self, actor: str, action: str, call_id: str | None, detail: Any) -> None:
        self.conn.execute(
            "INSERT INTO audit (at, actor, action, call_id, detail) VALUES (?, ?, ?, ?, ?)",
            (utc_now(), actor, action, call_id, _dumps(detail)),
        )

    # ------------------------------------------------------------------ loading

    def load(
        self,
        score_file: str | Path,
        transcripts: str | Path | None = None,
        *,
        all_calls: bool = False,
        actor: str | None = None,
    ) -> LoadSummary:
        """Load the calls picked for review (all scored calls with `all_calls`) from a score output.

        Idempotent: a call already in the store keeps its verdicts; its machine fields and hits are
        refreshed, and hits that the new scoring no longer reports are retired (kept for history).
        """
        summary = LoadSummary()
        now = utc_now()
        loaded: set[str] = set()
        with self.conn:
            for number, obj in iter_score_lines(score_file):
                summary.lines += 1
                if not isinstance(obj, dict) or "error" in obj or obj.get("call_id") in (None, ""):
                    summary.errors += 1
                    continue
                if not (all_calls or obj.get("review")):
                    summary.not_sampled += 1
                    continue
                self._load_call(obj, f"{Path(score_file).name}:{number}", now, summary)
                loaded.add(str(obj["call_id"]))
            if transcripts is not None:
                self._attach_turns(transcripts, loaded, summary)
            summary.missing_transcripts = sum(
                1
                for c in loaded
                if self.conn.execute("SELECT turns FROM calls WHERE call_id=?", (c,)).fetchone()[0] is None
            )
            self._audit(actor or default_reviewer(), "load", None, {"file": str(score_file), **asdict(summary)})
        return summary

    def _load_call(self, obj: dict[str, Any], source: str, now: str, summary: LoadSummary) -> None:
        call_id = str(obj["call_id"])
        result = {k: v for k, v in obj.items() if k != "turns"}
        values = (
            None if obj.get("agent_id") is None else str(obj.get("agent_id")),
            None if obj.get("date") is None else str(obj.get("date"))[:10],
            None if obj.get("channel") is None else str(obj.get("channel")),
            as_number(obj.get("score")),
            int(bool(obj.get("fatal"))),
            as_number(obj.get("complaint_risk")),
            as_number(obj.get("empathy")),
            int(bool(obj.get("review"))),
            _dumps(obj.get("review_reason") or []),
            _dumps(result),
        )
        old = self.conn.execute("SELECT result FROM calls WHERE call_id=?", (call_id,)).fetchone()
        if old is None:
            self.conn.execute(
                "INSERT INTO calls (agent_id, date, channel, score, fatal, complaint_risk, empathy, review,"
                " review_reason, result, call_id, source, loaded_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, call_id, source, now, now),
            )
            summary.calls_new += 1
        elif old["result"] != values[-1]:
            self.conn.execute(
                "UPDATE calls SET agent_id=?, date=?, channel=?, score=?, fatal=?, complaint_risk=?, empathy=?,"
                " review=?, review_reason=?, result=?, source=?, updated_at=? WHERE call_id=?",
                (*values, source, now, call_id),
            )
            summary.calls_updated += 1
        keys = set()
        for h in _hits_of(obj):
            key = _hkey(h)
            keys.add(key)
            row = self.conn.execute(
                "SELECT hit_id, active FROM hits WHERE call_id=? AND hkey=?", (call_id, key)
            ).fetchone()
            if row is not None:
                if not row["active"]:
                    self.conn.execute("UPDATE hits SET active=1 WHERE hit_id=?", (row["hit_id"],))
                continue
            ordinal = self.conn.execute(
                "SELECT COALESCE(MAX(ordinal), 0) + 1 FROM hits WHERE call_id=?", (call_id,)
            ).fetchone()[0]
            detail = {k: v for k, v in h.items() if k not in ("rule", "type", "source", "turn", "text")}
            turn = h.get("turn")
            self.conn.execute(
                "INSERT INTO hits (call_id, ordinal, hkey, kind, rule, type, source, turn, text, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call_id, ordinal, key, hit_kind(h), str(h["rule"]), h.get("type"), h.get("source"),
                    turn if isinstance(turn, int) else None, h.get("text") or "", _dumps(detail),
                ),
            )  # fmt: skip
            summary.hits_new += 1
        for row in self.conn.execute(
            "SELECT hit_id, hkey FROM hits WHERE call_id=? AND active=1", (call_id,)
        ).fetchall():
            if row["hkey"] not in keys:
                self.conn.execute("UPDATE hits SET active=0 WHERE hit_id=?", (row["hit_id"],))
                summary.hits_retired += 1

    def _attach_turns(self, transcripts: str | Path, loaded: set[str], summary: LoadSummary) -> None:
        for record in iter_records(transcripts):
            if not record.ok or record.call_id is None:
                if record.call_id in loaded:
                    log.warning("transcript of call %s is invalid: %s", record.call_id, record.describe())
                continue
            exists = self.conn.execute("SELECT 1 FROM calls WHERE call_id=?", (record.call_id,)).fetchone()
            if exists is None:
                continue
            turns = [t.to_dict() for t in record.transcript.turns]
            self.conn.execute("UPDATE calls SET turns=? WHERE call_id=?", (_dumps(turns), record.call_id))
            summary.transcripts += 1

    # ------------------------------------------------------------------ reading

    def _call_row(self, call_id: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM calls WHERE call_id=?", (call_id,)).fetchone()
        if row is None:
            raise ReviewError(
                f"call {call_id!r} is not in the review store {self.path}; load it with `kefu qa review load`"
            )
        return row

    def hits(self, call_id: str, active_only: bool = True) -> list[dict[str, Any]]:
        """The call's hits with their latest verdict (None when not reviewed yet) and script links."""
        rows = self.conn.execute(
            "SELECT h.*, (SELECT correct FROM verdicts v WHERE v.hit_id=h.hit_id ORDER BY v.id DESC LIMIT 1) AS verdict"
            " FROM hits h WHERE call_id=?" + (" AND active=1" if active_only else "") + " ORDER BY ordinal",
            (call_id,),
        ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["detail"] = json.loads(d["detail"])
            d["verdict"] = None if d["verdict"] is None else bool(d["verdict"])
            d["links"] = [
                dict(x)
                for x in self.conn.execute(
                    "SELECT script_id, scenario, script, score FROM links WHERE hit_id=? ORDER BY rank", (r["hit_id"],)
                )
            ]
            out.append(d)
        return out

    def call(self, call_id: str) -> dict[str, Any]:
        """Everything about one call: machine result, turns, hits, manual scores, appeals, decisions."""
        row = dict(self._call_row(call_id))
        row["result"] = json.loads(row["result"])
        row["turns"] = json.loads(row["turns"]) if row["turns"] else None
        row["review_reason"] = json.loads(row["review_reason"])
        row["hits"] = self.hits(call_id)
        row["manual_scores"] = [
            dict(x) for x in self.conn.execute("SELECT * FROM manual_scores WHERE call_id=? ORDER BY id", (call_id,))
        ]
        row["appeals"] = [
            dict(x) for x in self.conn.execute("SELECT * FROM appeals WHERE call_id=? ORDER BY appeal_id", (call_id,))
        ]
        row["decisions"] = [
            dict(x) for x in self.conn.execute("SELECT * FROM decisions WHERE call_id=? ORDER BY id", (call_id,))
        ]
        row["turn_labels"] = [
            dict(x) for x in self.conn.execute("SELECT * FROM turn_labels WHERE call_id=? ORDER BY id", (call_id,))
        ]
        row["status"] = self._status(call_id)
        return row

    def _status(self, call_id: str) -> str:
        q = self.conn.execute
        if q("SELECT 1 FROM appeals WHERE call_id=? AND status='open'", (call_id,)).fetchone():
            return "appealed"
        if q("SELECT 1 FROM decisions WHERE call_id=?", (call_id,)).fetchone():
            return "decided"
        open_hits = q(
            "SELECT COUNT(*) FROM hits h WHERE call_id=? AND active=1 AND NOT EXISTS"
            " (SELECT 1 FROM verdicts v WHERE v.hit_id=h.hit_id)",
            (call_id,),
        ).fetchone()[0]
        scored = q("SELECT 1 FROM manual_scores WHERE call_id=?", (call_id,)).fetchone() is not None
        if scored and open_hits == 0:
            return "reviewed"
        any_verdict = q(
            "SELECT 1 FROM verdicts v JOIN hits h ON h.hit_id=v.hit_id WHERE h.call_id=?", (call_id,)
        ).fetchone()
        if scored or any_verdict:
            return "in_review"
        # Calls loaded with all_calls (the console loads every scored call) that sampling did not pick.
        sampled = q("SELECT review FROM calls WHERE call_id=?", (call_id,)).fetchone()
        return "not_sampled" if sampled is not None and sampled[0] == 0 else "pending"

    def queue(
        self, status: str | None = None, agent: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Calls in the store, most urgent first (fatal, then complaint risk, then low score), with status."""
        sql = "SELECT call_id, agent_id, date, score, fatal, complaint_risk, review_reason FROM calls"
        args: list[Any] = []
        if agent is not None:
            sql += " WHERE agent_id=?"
            args.append(agent)
        sql += " ORDER BY fatal DESC, complaint_risk DESC, score ASC, call_id"
        out = []
        for r in self.conn.execute(sql, args).fetchall():
            st = self._status(r["call_id"])
            if status is not None and st != status:
                continue
            hits = self.conn.execute(
                "SELECT COUNT(*), SUM(EXISTS(SELECT 1 FROM verdicts v WHERE v.hit_id=h.hit_id)) FROM hits h"
                " WHERE call_id=? AND active=1",
                (r["call_id"],),
            ).fetchone()
            out.append(
                {
                    **{k: r[k] for k in ("call_id", "agent_id", "date", "score", "complaint_risk")},
                    "fatal": bool(r["fatal"]),
                    "review_reason": json.loads(r["review_reason"]),
                    "hits": hits[0],
                    "verdicts": hits[1] or 0,
                    "status": st,
                }
            )
            if limit is not None and len(out) >= limit:
                break
        return out

    def resolve_hit(self, call_id: str, ref: str | int) -> dict[str, Any]:
        """A hit by its number within the call (as `queue`/`show` list it) or by rule id when unique."""
        self._call_row(call_id)
        hits = self.hits(call_id)
        text = str(ref).lstrip("#")
        if text.isdigit():
            for h in hits:
                if h["ordinal"] == int(text):
                    return h
            numbers = ", ".join(str(h["ordinal"]) for h in hits) or "none"
            raise ReviewError(f"call {call_id} has no hit #{text}; its hits are {numbers}")
        same = [h for h in hits if h["rule"] == text]
        if len(same) == 1:
            return same[0]
        if not same:
            rules = ", ".join(sorted({h["rule"] for h in hits})) or "none"
            raise ReviewError(f"call {call_id} has no hit of rule {text!r}; its rules are {rules}")
        numbers = ", ".join(f"#{h['ordinal']}" for h in same)
        raise ReviewError(f"call {call_id} has {len(same)} hits of rule {text!r} ({numbers}); give the number")

    # ------------------------------------------------------------------ review actions

    def verdict(
        self, call_id: str, ref: str | int, correct: bool, reviewer: str, note: str | None = None
    ) -> dict[str, Any]:
        """Record whether a hit is right (true) or a false alarm (false); the latest verdict counts."""
        hit = self.resolve_hit(call_id, ref)
        with self.conn:
            self.conn.execute(
                "INSERT INTO verdicts (hit_id, correct, reviewer, note, created_at) VALUES (?, ?, ?, ?, ?)",
                (hit["hit_id"], int(correct), reviewer, note, utc_now()),
            )
            self._audit(
                reviewer,
                "verdict",
                call_id,
                {"hit": hit["ordinal"], "rule": hit["rule"], "correct": correct, "note": note},
            )
        return hit

    def manual_score(
        self, call_id: str, score: float, reviewer: str, fatal: bool | None = None, note: str | None = None
    ) -> None:
        """Record the reviewer's own score (0–100) and, optionally, whether the call fails a fatal item."""
        if not 0 <= score <= 100:
            raise ReviewError(f"a manual score must be between 0 and 100, got {score:g}")
        self._call_row(call_id)
        with self.conn:
            self.conn.execute(
                "INSERT INTO manual_scores (call_id, score, fatal, reviewer, note, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (call_id, score, None if fatal is None else int(fatal), reviewer, note, utc_now()),
            )
            self._audit(reviewer, "score", call_id, {"score": score, "fatal": fatal, "note": note})

    def label_turn(self, call_id: str, turn: int, label: str, value: bool, reviewer: str) -> None:
        """Label one turn directly for training (taboo/empathy on agent turns, risk on customer turns)."""
        if label not in TURN_LABELS:
            raise ReviewError(f"label must be one of {', '.join(TURN_LABELS)}, got {label!r}")
        row = self._call_row(call_id)
        if row["turns"]:
            turns = json.loads(row["turns"])
            if not 0 <= turn < len(turns):
                raise ReviewError(f"call {call_id} has turns 0–{len(turns) - 1}, got turn {turn}")
            if turns[turn].get("role") != TURN_LABELS[label]:
                raise ReviewError(
                    f"label {label} applies to {TURN_LABELS[label]} turns; "
                    f"turn {turn} of {call_id} is {turns[turn].get('role')}"
                )
        with self.conn:
            self.conn.execute(
                "INSERT INTO turn_labels (call_id, turn, label, value, reviewer, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (call_id, turn, label, int(value), reviewer, utc_now()),
            )
            self._audit(reviewer, "label", call_id, {"turn": turn, "label": label, "value": int(value)})

    def appeal(self, call_id: str, reason: str, filed_by: str) -> int:
        """An agent's appeal against the result of a call; returns the appeal id."""
        if not reason or not reason.strip():
            raise ReviewError("an appeal needs a reason (--reason)")
        row = self._call_row(call_id)
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO appeals (call_id, agent_id, reason, filed_by, created_at) VALUES (?, ?, ?, ?, ?)",
                (call_id, row["agent_id"], reason.strip(), filed_by, utc_now()),
            )
            self._audit(filed_by, "appeal", call_id, {"appeal_id": cur.lastrowid, "reason": reason.strip()})
        return int(cur.lastrowid or 0)

    def decide(
        self,
        call_id: str,
        outcome: str,
        reviewer: str,
        final_score: float | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """The final decision on a call: closes its open appeals. `adjusted` needs a final score.

        Without `final_score` the final score is the latest manual score, else the machine score;
        state it (--score) whenever the decision changes the score.
        """
        if outcome not in OUTCOMES:
            raise ReviewError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if final_score is not None and not 0 <= final_score <= 100:
            raise ReviewError(f"a final score must be between 0 and 100, got {final_score:g}")
        if outcome == "adjusted" and final_score is None:
            raise ReviewError("outcome adjusted needs the new score (--score N)")
        row = self._call_row(call_id)
        if final_score is None:
            manual = self.conn.execute(
                "SELECT score FROM manual_scores WHERE call_id=? ORDER BY id DESC LIMIT 1", (call_id,)
            ).fetchone()
            final_score = manual[0] if manual is not None else row["score"]
        appeal = self.conn.execute(
            "SELECT appeal_id FROM appeals WHERE call_id=? AND status='open' ORDER BY appeal_id DESC LIMIT 1",
            (call_id,),
        ).fetchone()
        with self.conn:
            self.conn.execute(
                "INSERT INTO decisions (call_id, appeal_id, outcome, final_score, reviewer, note, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (call_id, appeal[0] if appeal else None, outcome, final_score, reviewer, note, utc_now()),
            )
            self.conn.execute("UPDATE appeals SET status='decided' WHERE call_id=? AND status='open'", (call_id,))
            self._audit(reviewer, "decide", call_id, {"outcome": outcome, "final_score": final_score, "note": note})
        return {
            "call_id": call_id,
            "outcome": outcome,
            "final_score": final_score,
            "appeal_id": appeal[0] if appeal else None,
        }

    def save_links(self, hit_id: int, links: list[dict[str, Any]], query: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM links WHERE hit_id=?", (hit_id,))
            now = utc_now()
            for rank, link in enumerate(links, start=1):
                self.conn.execute(
                    "INSERT INTO links (hit_id, rank, script_id, scenario, script, score, query, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (hit_id, rank, link["id"], link.get("scenario"), link.get("script"), link.get("score"), query, now),
                )

    # ------------------------------------------------------------------ for calibration and export

    def call_ids(self) -> Iterator[str]:
        for (cid,) in self.conn.execute("SELECT call_id FROM calls ORDER BY call_id").fetchall():
            yield cid

    def verdict_rows(self) -> list[dict[str, Any]]:
        """Every active hit with a verdict: rule, kind, source, detail and the latest verdict."""
        rows = self.conn.execute(
            "SELECT h.hit_id, h.call_id, h.rule, h.kind, h.source, h.turn, h.detail,"
            " (SELECT correct FROM verdicts v WHERE v.hit_id=h.hit_id ORDER BY v.id DESC LIMIT 1) AS correct"
            " FROM hits h WHERE h.active=1"
        ).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows if r["correct"] is not None]

    def agreement_rows(self) -> list[dict[str, Any]]:
        """Calls with a manual score: machine vs human score, and fatal where the human's view is known.

        The human's fatal is the explicit flag of the latest manual score when given; else, when the
        machine found fatal items, true if any of their hits was confirmed and false if all were
        rejected (unknown while some are unreviewed); else false (the reviewer saw no fatal item).
        """
        out = []
        for r in self.conn.execute(
            "SELECT c.call_id, c.score, c.fatal, c.result, m.score AS manual, m.fatal AS manual_fatal FROM calls c"
            " JOIN manual_scores m ON m.id = (SELECT MAX(id) FROM manual_scores WHERE call_id=c.call_id)"
        ).fetchall():
            human_fatal: bool | None
            if r["manual_fatal"] is not None:
                human_fatal = bool(r["manual_fatal"])
            else:
                fatal_items = set(json.loads(r["result"]).get("fatal_items") or [])
                if not fatal_items:
                    human_fatal = False
                else:
                    verdicts = [h["verdict"] for h in self.hits(r["call_id"]) if h["rule"] in fatal_items]
                    if any(v is True for v in verdicts):
                        human_fatal = True
                    elif verdicts and all(v is False for v in verdicts):
                        human_fatal = False
                    else:
                        human_fatal = None
            out.append(
                {
                    "call_id": r["call_id"],
                    "machine_score": r["score"],
                    "human_score": r["manual"],
                    "machine_fatal": bool(r["fatal"]),
                    "human_fatal": human_fatal,
                }
            )
        return out

    def turn_label_rows(self) -> list[dict[str, Any]]:
        """The latest explicit label per (call, turn, label)."""
        rows = self.conn.execute(
            "SELECT call_id, turn, label, value FROM turn_labels t WHERE id = (SELECT MAX(id) FROM turn_labels u"
            " WHERE u.call_id=t.call_id AND u.turn=t.turn AND u.label=t.label)"
        ).fetchall()
        return [dict(r) for r in rows]

    def turns(self, call_id: str) -> list[dict[str, Any]] | None:
        row = self._call_row(call_id)
        return json.loads(row["turns"]) if row["turns"] else None

    def reviewed_call_ids(self) -> set[str]:
        """Calls a person has scored or decided (listened to in full)."""
        rows = self.conn.execute("SELECT call_id FROM manual_scores UNION SELECT call_id FROM decisions").fetchall()
        return {r[0] for r in rows}

    def audit_log(self, call_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM audit", []
        if call_id is not None:
            sql += " WHERE call_id=?"
            args.append(call_id)
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY id", args)]


def open_store(path: str | Path, must_exist: bool = False) -> ReviewStore:
    """Open (or create) the review store at `path`, with a clear error when it cannot be."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"--db {p}: is a directory, expected a SQLite file")
    return ReviewStore(p, create=not must_exist)
