"""The ScriptStore interface: versioned scenario scripts with statuses and an audit log."""

from __future__ import annotations

import getpass
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kefu.io import KefuError
from knowledge_base.schema import STATUSES, Script, Status

USER_ENV = "KEFU_USER"
# Keys of Script.content() that are Script attributes; every other content key lives in Script.extra.
CORE_KEYS: tuple[str, ...] = ("id", "scenario", "category", "questions", "script", "keywords", "tags")


class StoreError(KefuError):
    """The store cannot do what was asked: unknown script, bad status, unreadable database."""


def default_author() -> str:
    """Who is making a change: $KEFU_USER, else the OS user, else 'unknown'."""
    name = os.environ.get(USER_ENV, "").strip()
    if name:
        return name
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # getpass raises several types when no user can be found (containers)
        return "unknown"


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. 2026-11-23T09:40:12.345Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_status(status: str) -> Status:
    if status not in STATUSES:
        raise StoreError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status  # type: ignore[return-value]


def canonical(content: dict[str, Any]) -> str:
    """Stable JSON text of a script's content: equal content gives equal text."""
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def script_from_content(content: dict[str, Any], status: str, version: int) -> Script:
    """Rebuild a Script from stored content JSON."""
    extra = {k: v for k, v in content.items() if k not in CORE_KEYS}
    return Script(
        id=content["id"],
        scenario=content.get("scenario", ""),
        questions=list(content.get("questions", [])),
        script=content.get("script", ""),
        category=content.get("category", "") or "",
        keywords=list(content.get("keywords", [])),
        tags=list(content.get("tags", [])),
        status=check_status(status),
        version=version,
        extra=extra,
    )


@dataclass(slots=True)
class ScriptVersion:
    """One stored version of a script: its full content and status, who made it, when and why."""

    id: str
    version: int
    status: Status
    content: dict[str, Any]
    author: str
    time: str
    kb_version: int
    action: str  # create, edit, approve, retire, draft
    note: str = ""

    def script(self) -> Script:
        return script_from_content(self.content, self.status, self.version)

    def changed_fields(self, previous: ScriptVersion | None) -> list[str]:
        """Fields that differ from `previous` (status first); empty for the first version."""
        if previous is None:
            return []
        keys = sorted(set(previous.content) | set(self.content))
        fields = [k for k in keys if previous.content.get(k) != self.content.get(k)]
        if previous.status != self.status:
            fields.insert(0, "status")
        return fields

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "status": self.status,
            "action": self.action,
            "author": self.author,
            "time": self.time,
            "kb_version": self.kb_version,
            "note": self.note,
            "content": self.content,
        }


@dataclass(slots=True)
class AuditEntry:
    """One line of the audit log: who did what, when, to which script (if any), with details."""

    seq: int
    time: str
    actor: str
    action: str
    script_id: str | None
    version: int | None
    kb_version: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "script_id": self.script_id,
            "version": self.version,
            "kb_version": self.kb_version,
            "details": self.details,
        }


@dataclass(slots=True)
class Change:
    """What one put/set_status did to a script (returned only when something changed)."""

    id: str
    action: str  # create, edit, approve, retire, draft
    old_version: int | None
    new_version: int
    old_status: Status | None
    new_status: Status
    kb_version: int

    @property
    def was_approved(self) -> bool:
        return self.old_status == "approved"

    @property
    def is_approved(self) -> bool:
        return self.new_status == "approved"


@dataclass(slots=True)
class ScriptInfo:
    """When and by whom a script was created and last changed."""

    id: str
    version: int
    status: Status
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    kb_version: int


class ScriptStore(ABC):
    """Versioned storage of scenario scripts: the knowledge base's source of truth.

    Every change of content or status makes a new version (the old ones are kept), is written to
    the audit log with its author, and bumps the store's `kb_version` once per committed
    transaction. Writing the same content and status again changes nothing.
    """

    @abstractmethod
    def get(self, script_id: str) -> Script | None:
        """The current version of a script, or None."""

    @abstractmethod
    def info(self, script_id: str) -> ScriptInfo | None:
        """Creation and last-change metadata of a script, or None."""

    @abstractmethod
    def list(
        self, status: str | Iterable[str] | None = None, category: str | None = None, tag: str | None = None
    ) -> list[Script]:
        """Current versions, sorted by id, optionally filtered by status(es), category and tag."""

    @abstractmethod
    def ids(self) -> set[str]:
        """Every script id in the store."""

    @abstractmethod
    def put(
        self, script: Script, *, author: str | None = None, action: str | None = None, note: str = ""
    ) -> Change | None:
        """Store `script` (with its status) as a new version; None when content and status are unchanged."""

    @abstractmethod
    def set_status(self, script_id: str, status: str, *, author: str | None = None, note: str = "") -> Change | None:
        """Change a script's status as a new version; None when it already has that status."""

    @abstractmethod
    def history(self, script_id: str) -> list[ScriptVersion]:
        """Every version of a script, oldest first."""

    @abstractmethod
    def version(self, script_id: str, version: int) -> ScriptVersion | None:
        """One version of a script, or None."""

    @abstractmethod
    def audit(
        self, script_id: str | None = None, *, limit: int | None = None, since: str | None = None
    ) -> list[AuditEntry]:
        """Audit entries, newest first, optionally for one script and since an ISO time."""

    @abstractmethod
    def log(
        self,
        action: str,
        details: dict[str, Any] | None = None,
        *,
        script_id: str | None = None,
        author: str | None = None,
    ) -> None:
        """Add an audit entry that is not a script version (an import summary, a reindex)."""

    @abstractmethod
    def kb_version(self) -> int:
        """The store's version: bumped once by every committed transaction that changed a script."""

    @abstractmethod
    def transaction(self, author: str | None = None) -> AbstractContextManager[None]:
        """Group changes: all are committed together or none (nested blocks join the outer one)."""

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A store-level setting (e.g. the kb_version the index was built at)."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set a store-level setting; does not bump kb_version."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Number of scripts per status."""

    @abstractmethod
    def close(self) -> None:
        """Release the database."""

    def __enter__(self) -> ScriptStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Script]:
        return iter(self.list())
