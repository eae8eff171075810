"""Script stores: the source of truth for scenario scripts, their versions and the audit log."""

from __future__ import annotations

from pathlib import Path

from knowledge_base.store.base import (
    AuditEntry,
    Change,
    ScriptStore,
    ScriptVersion,
    StoreError,
    default_author,
    utc_now,
)

BACKENDS: tuple[str, ...] = ("sqlite",)
DB_NAME = "kb.sqlite"


def open_store(kb_dir: str | Path, backend: str = "sqlite", *, create: bool = True) -> ScriptStore:
    """Open the script store of the knowledge base in `kb_dir` (created when `create` is true)."""
    if backend not in BACKENDS:
        raise StoreError(f"unknown store backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    from knowledge_base.store.sqlite import SqliteStore

    return SqliteStore(Path(kb_dir) / DB_NAME, create=create)


__all__ = [
    "BACKENDS",
    "DB_NAME",
    "AuditEntry",
    "Change",
    "ScriptStore",
    "ScriptVersion",
    "StoreError",
    "default_author",
    "open_store",
    "utc_now",
]
