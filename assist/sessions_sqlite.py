"""Call sessions shared by several worker processes on one host: state in SQLite, optimistic concurrency."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from assist.engine import AssistError, CallSession

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    call_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    last_seen REAL NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_seen ON sessions(last_seen);
"""


class SqliteSessionStore:
    """Every turn loads the call's state, runs the engine and saves it back only if nobody saved a newer
    version meanwhile (`commit` returns False and the caller re-runs the turn on the fresh state).

    With plain `uvicorn --workers N` a call's turns land on any worker; this store makes that correct at the
    cost of a read and a write of a few kilobytes per turn. Same interface as assist.sessions.SessionStore.
    """

    def __init__(self, path: str | Path, max_sessions: int = 10_000, ttl_s: float = 1800.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise AssistError(f"max_sessions must be an integer >= 1, got {max_sessions!r}")
        if ttl_s <= 0:
            raise AssistError(f"ttl_s must be > 0 seconds, got {ttl_s!r}")
        self.path = Path(path)
        self.max_sessions = max_sessions
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)
        self.evicted = self.expired = self.created = self.conflicts = 0

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def __len__(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def get(self, call_id: str) -> CallSession | None:
        row = self._db().execute("SELECT state, last_seen FROM sessions WHERE call_id = ?", (call_id,)).fetchone()
        if row is None:
            return None
        if self.clock() - row[1] > self.ttl_s:
            self._db().execute("DELETE FROM sessions WHERE call_id = ? AND last_seen = ?", (call_id, row[1]))
            self.expired += 1
            return None
        return CallSession.from_state(json.loads(row[0]))

    def get_or_create(self, call_id: str) -> tuple[CallSession, bool]:
        s = self.get(call_id)
        if s is not None:
            return s, False
        now = self.clock()
        s = CallSession(call_id, now)
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM sessions WHERE last_seen < ?", (now - self.ttl_s,))
            over = int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]) - self.max_sessions + 1
            if over > 0:
                old = db.execute("SELECT call_id FROM sessions ORDER BY last_seen LIMIT ?", (over,)).fetchall()
                db.executemany("DELETE FROM sessions WHERE call_id = ?", old)
                self.evicted += len(old)
                log.warning("session limit %d reached: evicted %s", self.max_sessions, ", ".join(r[0] for r in old))
            cur = db.execute("INSERT OR IGNORE INTO sessions(call_id, version, last_seen, state) VALUES (?, 0, ?, ?)",
                             (call_id, now, json.dumps(s.to_state(), ensure_ascii=False)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if cur.rowcount == 0:  # another worker created it a moment ago
            again = self.get(call_id)
            if again is not None:
                return again, False
        self.created += 1
        return s, True

    def commit(self, session: CallSession, loaded_version: int) -> bool:
        """Save the state if it is still at `loaded_version` in the store; False on a concurrent update."""
        cur = self._db().execute(
            "UPDATE sessions SET version = ?, last_seen = ?, state = ? WHERE call_id = ? AND version = ?",
            (session.version, session.last_seen, json.dumps(session.to_state(), ensure_ascii=False),
             session.call_id, loaded_version))
        if cur.rowcount == 1:
            return True
        self.conflicts += 1
        return False

    def end(self, call_id: str) -> CallSession | None:
        s = self.get(call_id)
        self._db().execute("DELETE FROM sessions WHERE call_id = ?", (call_id,))
        return s

    def sweep(self) -> int:
        cur = self._db().execute("DELETE FROM sessions WHERE last_seen < ?", (self.clock() - self.ttl_s,))
        self.expired += cur.rowcount
        return cur.rowcount

    def ids(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT call_id FROM sessions ORDER BY last_seen")]

    def stats(self) -> dict[str, int]:
        return {"live": len(self), "max": self.max_sessions, "created": self.created, "expired": self.expired,
                "evicted": self.evicted, "conflicts": self.conflicts}
