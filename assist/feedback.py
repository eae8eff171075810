"""Suggestion feedback in SQLite (shown, accepted, dismissed, used) and the bounded ranking adjustment it earns."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.io import KefuError

log = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = ("shown", "accepted", "dismissed", "used")
AGENT_ACTIONS: tuple[str, ...] = ("accepted", "dismissed", "used")
# Calls whose id starts with this are training replays (the console's 培训回放): their events are stored,
# but they neither move the ranking nor count in the trainers' report — practice is not evidence.
TRAINING_CALL_PREFIX = "TR-"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    call_id TEXT NOT NULL,
    script_id TEXT NOT NULL,
    action TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'agent',
    score REAL,
    scenario TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_script ON feedback(script_id, action);
"""


class FeedbackError(KefuError):
    """Bad feedback (unknown action, empty id) or an unusable feedback database."""


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """How feedback moves ranking: by at most ±max_adjust, and only after min_evidence judgements.

    adjustment = max_adjust × (positive − negative) / (positive + negative), where positive = accepted + used
    and negative = dismissed, counted per script; zero below min_evidence judgements.
    """

    max_adjust: float = 0.1
    min_evidence: int = 20

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_adjust <= 0.5:
            raise FeedbackError(f"max_adjust must be between 0 and 0.5, got {self.max_adjust}")
        if not isinstance(self.min_evidence, int) or self.min_evidence < 1:
            raise FeedbackError(f"min_evidence must be an integer >= 1, got {self.min_evidence!r}")

    def adjust(self, positive: int, negative: int) -> float:
        n = positive + negative
        if n < self.min_evidence:
            return 0.0
        return self.max_adjust * (positive - negative) / n


class FeedbackStore:
    """SQLite feedback log shared by every worker (WAL). Writes go through a background thread in batches,
    so a turn never waits on the disk; adjustments are re-read every `refresh_s` seconds.
    """

    def __init__(self, path: str | Path, policy: FeedbackPolicy | None = None, refresh_s: float = 5.0,
                 queue_size: int = 10_000) -> None:
        self.path = Path(path)
        self.policy = policy or FeedbackPolicy()
        self.refresh_s = refresh_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise FeedbackError(f"{self.path}: cannot open the feedback database ({exc})") from None
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=queue_size)
        self._adjust: dict[str, float] = {}
        self._loaded = 0.0
        self.dropped = 0
        self._thread = threading.Thread(target=self._writer, name="kefu-feedback", daemon=True)
        self._closed = False
        self._thread.start()
        self.refresh()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # --- writing ---------------------------------------------------------------------------------------
    def record(self, call_id: str, script_id: str, action: str, *, source: str = "agent", score: float | None = None,
               scenario: str = "") -> None:
        """Queue one event (non-blocking); a full queue drops the event with a warning rather than stall a call."""
        if action not in ACTIONS:
            raise FeedbackError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not script_id:
            raise FeedbackError("script_id must not be empty")
        try:
            self._queue.put_nowait((time.time(), call_id, script_id, action, source, score, scenario))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("feedback queue full: %d events dropped so far", self.dropped)

    def _writer(self) -> None:
        db = self._connect()
        try:
            while True:
                item = self._queue.get()
                batch = [] if item is None else [item]
                stop = item is None
                while not stop and len(batch) < 500:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                    else:
                        batch.append(nxt)
                if batch:
                    try:
                        with db:
                            db.execute("BEGIN")
                            db.executemany(
                                "INSERT INTO feedback(time, call_id, script_id, action, source, score, scenario) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
                    except sqlite3.Error:
                        log.exception("could not write %d feedback events", len(batch))
                for _ in range(len(batch) + (1 if stop else 0)):
                    self._queue.task_done()
                if stop:
                    return
        finally:
            db.close()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until queued events are on disk, then refresh the adjustments."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        self.refresh()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10.0)

    # --- reading ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """Per script id, the number of events of each action (live calls only, not training replays)."""
        out: dict[str, dict[str, int]] = {}
        with self._connect() as db:
            rows = db.execute(
                "SELECT script_id, action, COUNT(*) FROM feedback WHERE substr(call_id, 1, ?) != ?"
                " GROUP BY script_id, action", (len(TRAINING_CALL_PREFIX), TRAINING_CALL_PREFIX)).fetchall()
        for sid, action, n in rows:
            out.setdefault(sid, dict.fromkeys(ACTIONS, 0))[action] = n
        return out

    def refresh(self) -> None:
        """Recompute every script's adjustment from the database (all workers' events)."""
        try:
            counts = self.counts()
        except sqlite3.Error:
            log.exception("could not read feedback")
            return
        adjust = {}
        for sid, c in counts.items():
            value = self.policy.adjust(c["accepted"] + c["used"], c["dismissed"])
            if value:
                adjust[sid] = value
        self._adjust = adjust
        self._loaded = time.monotonic()

    def adjustment(self, script_id: str) -> float:
        """The bounded ranking adjustment of a script (0 until there is enough evidence)."""
        if time.monotonic() - self._loaded > self.refresh_s:
            self._loaded = time.monotonic()  # one refresher at a time; others keep the old values
            threading.Thread(target=self.refresh, name="kefu-feedback-refresh", daemon=True).start()
        return self._adjust.get(script_id, 0.0)

    def report(self, scenarios: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """One row per script for trainers: counts, acceptance and dismissal rates, current adjustment."""
        scenario_of: dict[str, str] = dict(scenarios or {})
        with self._connect() as db:
            for sid, scen in db.execute(
                "SELECT script_id, MAX(scenario) FROM feedback WHERE scenario != '' GROUP BY script_id"
            ).fetchall():
                scenario_of.setdefault(sid, scen)
        rows = []
        for sid, c in sorted(self.counts().items()):
            judged = c["accepted"] + c["dismissed"] + c["used"]
            rows.append({
                "script_id": sid, "scenario": scenario_of.get(sid, ""), **c,
                "acceptance_rate": round((c["accepted"] + c["used"]) / c["shown"], 4) if c["shown"] else None,
                "dismissal_rate": round(c["dismissed"] / c["shown"], 4) if c["shown"] else None,
                "judged": judged,
                "adjustment": round(self.policy.adjust(c["accepted"] + c["used"], c["dismissed"]), 4),
            })
        rows.sort(key=lambda r: (-(r["shown"] or 0), r["script_id"]))
        return rows
