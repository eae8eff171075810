"""SQLite script store: WAL mode, one transaction per change set, full content JSON per version."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from knowledge_base.schema import Script
from knowledge_base.store.base import (
    AuditEntry,
    Change,
    ScriptInfo,
    ScriptStore,
    ScriptVersion,
    StoreError,
    canonical,
    check_status,
    default_author,
    script_from_content,
    utc_now,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scripts (
    id         TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('draft', 'approved', 'retired')),
    category   TEXT NOT NULL DEFAULT '',
    content    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    kb_version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS scripts_status ON scripts (status);
CREATE TABLE IF NOT EXISTS versions (
    script_id  TEXT NOT NULL,
    version    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    content    TEXT NOT NULL,
    author     TEXT NOT NULL,
    time       TEXT NOT NULL,
    kb_version INTEGER NOT NULL,
    action     TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (script_id, version)
);
CREATE TABLE IF NOT EXISTS audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    time       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    script_id  TEXT,
    version    INTEGER,
    kb_version INTEGER NOT NULL,
    details    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_script ON audit (script_id, seq);
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SqliteStore(ScriptStore):
    """The embedded default store: one SQLite file (kb.sqlite) in the knowledge-base directory.

    WAL journal mode lets readers (search, show, the assist service) read the last committed state
    while an import is writing. Writes take the database lock at BEGIN (BEGIN IMMEDIATE) so two
    writers queue instead of failing half way; a crash before COMMIT leaves the file as it was.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(
                f"no knowledge base at {self.path.parent} (no {self.path.name}); "
                f"create one with `kefu kb import FILE --kb {self.path.parent}`"
            )
        if self.path.exists() and self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, expected an SQLite file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
            # assist service may call from worker threads; self._lock serialises use of the connection.
            self._conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the knowledge-base database ({exc})") from None
        self._lock = threading.RLock()
        self._depth = 0
        self._tx_author: str | None = None
        self._tx_kb_version: int | None = None

    # -- set-up ---------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        row = None
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:  # a new, empty database
            pass
        if row is not None:
            if int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer kefu (schema {row[0]}, this one reads {SCHEMA_VERSION})"
                )
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?), ('kb_version', '0'), "
                "('created_at', ?)",
                (str(SCHEMA_VERSION), utc_now()),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, author: str | None = None) -> Iterator[None]:
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
                self._tx_author = author
                self._tx_kb_version = None
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                    self._tx_author = self._tx_kb_version = None
                raise
            self._depth -= 1
            if outer:
                try:
                    self._conn.execute("COMMIT")
                finally:
                    self._tx_author = self._tx_kb_version = None

    def _author(self, author: str | None) -> str:
        return author or self._tx_author or default_author()

    def _bump(self) -> int:
        """The kb_version of the current transaction: bumped on its first change only."""
        if self._tx_kb_version is None:
            current = int(self._meta("kb_version") or 0)
            self._tx_kb_version = current + 1
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'kb_version'", (str(self._tx_kb_version),))
        return self._tx_kb_version

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- reads ----------------------------------------------------------------------------------

    def get(self, script_id: str) -> Script | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT content, status, version FROM scripts WHERE id = ?", (script_id,)
            ).fetchone()
        return None if row is None else script_from_content(json.loads(row[0]), row[1], row[2])

    def info(self, script_id: str) -> ScriptInfo | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, version, status, created_at, created_by, updated_at, updated_by, kb_version "
                "FROM scripts WHERE id = ?",
                (script_id,),
            ).fetchone()
        return None if row is None else ScriptInfo(*row)

    def list(
        self, status: str | Iterable[str] | None = None, category: str | None = None, tag: str | None = None
    ) -> list[Script]:
        sql = "SELECT content, status, version FROM scripts"
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            for s in wanted:
                check_status(s)
            where.append(f"status IN ({','.join('?' * len(wanted))})")
            args += wanted
        if category is not None:
            where.append("category = ?")
            args.append(category)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        scripts = [script_from_content(json.loads(c), s, v) for c, s, v in rows]
        if tag is not None:
            scripts = [s for s in scripts if tag in s.tags]
        return scripts

    def ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._conn.execute("SELECT id FROM scripts")}

    def history(self, script_id: str) -> list[ScriptVersion]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT script_id, version, status, content, author, time, kb_version, action, note "
                "FROM versions WHERE script_id = ? ORDER BY version",
                (script_id,),
            ).fetchall()
        return [self._version_row(r) for r in rows]

    def version(self, script_id: str, version: int) -> ScriptVersion | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT script_id, version, status, content, author, time, kb_version, action, note "
                "FROM versions WHERE script_id = ? AND version = ?",
                (script_id, version),
            ).fetchone()
        return None if row is None else self._version_row(row)

    @staticmethod
    def _version_row(row: tuple[Any, ...]) -> ScriptVersion:
        sid, version, status, content, author, time, kb_version, action, note = row
        return ScriptVersion(sid, version, status, json.loads(content), author, time, kb_version, action, note)

    def audit(
        self, script_id: str | None = None, *, limit: int | None = None, since: str | None = None
    ) -> list[AuditEntry]:
        sql = "SELECT seq, time, actor, action, script_id, version, kb_version, details FROM audit"
        where: list[str] = []
        args: list[Any] = []
        if script_id is not None:
            where.append("script_id = ?")
            args.append(script_id)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [AuditEntry(*r[:7], details=json.loads(r[7])) for r in rows]

    def kb_version(self) -> int:
        with self._lock:
            return int(self._meta("kb_version") or 0)

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            return self._meta(key)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT status, COUNT(*) FROM scripts GROUP BY status").fetchall()
        out = {"draft": 0, "approved": 0, "retired": 0}
        out.update({status: n for status, n in rows})
        return out

    # -- writes ---------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        if key in ("kb_version", "schema_version"):
            raise StoreError(f"meta key {key!r} is managed by the store")
        with self.transaction():
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def put(
        self, script: Script, *, author: str | None = None, action: str | None = None, note: str = ""
    ) -> Change | None:
        status = check_status(script.status)
        content = script.content()
        text = canonical(content)
        with self.transaction():
            row = self._conn.execute(
                "SELECT content, status, version FROM scripts WHERE id = ?", (script.id,)
            ).fetchone()
            if row is not None and canonical(json.loads(row[0])) == text and row[1] == status:
                return None
            who = self._author(author)
            now = utc_now()
            kb_version = self._bump()
            if row is None:
                old_version, old_status, new_version = None, None, 1
                action = action or "create"
                self._conn.execute(
                    "INSERT INTO scripts (id, version, status, category, content, created_at, created_by, "
                    "updated_at, updated_by, kb_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (script.id, 1, status, script.category, text, now, who, now, who, kb_version),
                )
            else:
                old_version, old_status, new_version = row[2], row[1], row[2] + 1
                if action is None:
                    same_content = canonical(json.loads(row[0])) == text
                    action = _status_action(status) if same_content else "edit"
                self._conn.execute(
                    "UPDATE scripts SET version = ?, status = ?, category = ?, content = ?, updated_at = ?, "
                    "updated_by = ?, kb_version = ? WHERE id = ?",
                    (new_version, status, script.category, text, now, who, kb_version, script.id),
                )
            self._conn.execute(
                "INSERT INTO versions (script_id, version, status, content, author, time, kb_version, action, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (script.id, new_version, status, text, who, now, kb_version, action, note),
            )
            details: dict[str, Any] = {"status": status}
            if old_status is not None and old_status != status:
                details["from_status"] = old_status
            if note:
                details["note"] = note
            self._insert_audit(now, who, action, script.id, new_version, kb_version, details)
        return Change(script.id, action, old_version, new_version, old_status, status, kb_version)

    def set_status(self, script_id: str, status: str, *, author: str | None = None, note: str = "") -> Change | None:
        check_status(status)
        with self.transaction():
            current = self.get(script_id)
            if current is None:
                raise StoreError(f"no script with id {script_id!r}")
            if current.status == status:
                return None
            current.status = status  # type: ignore[assignment]
            return self.put(current, author=author, action=_status_action(status), note=note)

    def log(
        self,
        action: str,
        details: dict[str, Any] | None = None,
        *,
        script_id: str | None = None,
        author: str | None = None,
    ) -> None:
        with self.transaction():
            kb_version = self._tx_kb_version if self._tx_kb_version is not None else int(self._meta("kb_version") or 0)
            self._insert_audit(utc_now(), self._author(author), action, script_id, None, kb_version, details or {})

    def _insert_audit(
        self,
        time: str,
        actor: str,
        action: str,
        script_id: str | None,
        version: int | None,
        kb_version: int,
        details: dict[str, Any],
    ) -> None:
        self._conn.execute(
            "INSERT INTO audit (time, actor, action, script_id, version, kb_version, details) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time, actor, action, script_id, version, kb_version, _dumps(details)),
        )

    def close(self) -> None:
        with self._lock:
            if self._depth:
                log.warning("%s: closing with an open transaction; it is rolled back", self.path)
            self._conn.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


def _status_action(status: str) -> str:
    return {"approved": "approve", "retired": "retire", "draft": "draft"}[status]
