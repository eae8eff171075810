"""The supervisors' alert bus: live alerts across calls, numbered so that a stream can resume where it left off."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class AlertBus(Protocol):
    """Publish alerts; read those after a sequence number (the stream polls this)."""

    def publish(self, alert: dict[str, Any]) -> None: ...

    def since(self, seq: int, limit: int = 100) -> list[dict[str, Any]]: ...

    def last_seq(self) -> int: ...


class MemoryAlertBus:
    """In-process ring buffer of the last `size` alerts (one service process)."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._items: deque[dict[str, Any]] = deque(maxlen=size)
        self._seq = 0
        self._lock = threading.Lock()

    def publish(self, alert: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._items.append({"seq": self._seq, "time": round(time.time(), 3), **alert})
        log.info("supervisor alert %s on call %s", alert.get("type"), alert.get("call_id"))

    def since(self, seq: int, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self._items if a["seq"] > seq][:limit]

    def last_seq(self) -> int:
        return self._seq


class SqliteAlertBus:
    """Alerts in a shared SQLite file, so that the supervisors' stream of any worker or instance sees them all.

    Keeps the newest `size` rows; the stream polls `since()`.
    """

    def __init__(self, path: str | Path, size: int = 10_000) -> None:
        self.path = Path(path)
        self.size = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL, body TEXT)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def publish(self, alert: dict[str, Any]) -> None:
        try:
            db = self._db()
            cur = db.execute("INSERT INTO alerts(time, body) VALUES (?, ?)",
                             (time.time(), json.dumps(alert, ensure_ascii=False)))
            seq = cur.lastrowid or 0
            if seq % 500 == 0:
                db.execute("DELETE FROM alerts WHERE seq <= ?", (seq - self.size,))
        except sqlite3.Error:
            log.exception("could not publish an alert to %s", self.path)

    def since(self, seq: int, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db().execute("SELECT seq, time, body FROM alerts WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (seq, limit)).fetchall()
        return [{"seq": s, "time": round(t, 3), **json.loads(b)} for s, t, b in rows]

    def last_seq(self) -> int:
        row = self._db().execute("SELECT MAX(seq) FROM alerts").fetchone()
        return int(row[0] or 0)
