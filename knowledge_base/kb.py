"""The KnowledgeBase facade: curation on top of the script store, with the search index kept in step."""

from __future__ import annotations

import contextlib
import difflib
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kefu.io import KefuError
from kefu.progress import progress
from knowledge_base.io import ScriptRow, parse_script, read_scripts, write_scripts
from knowledge_base.schema import STATUSES, Retriever, Script
from knowledge_base.store import Change, ScriptStore, ScriptVersion, StoreError, open_store
from knowledge_base.store.base import CORE_KEYS, canonical

log = logging.getLogger(__name__)

INDEX_META_KEY = "index_kb_version"
INDEX_LOCK = "kb.sync.lock"
# Above this share of the approved scripts (and at least REBUILD_MIN changed scripts), a change set
# rebuilds the index instead of patching it: a rebuild is built aside, so it is also the safer path.
REBUILD_RATIO = 0.25
REBUILD_MIN = 20


class IndexLike(Protocol):
    """What the knowledge base needs from knowledge_base.index.manager.IndexManager."""

    def exists(self) -> bool: ...
    def rebuild(self, scripts: list[Script], kb_version: int) -> None: ...
    def upsert(self, scripts: list[Script], kb_version: int) -> None: ...
    def remove(self, ids: list[str], kb_version: int) -> None: ...
    def retriever(self) -> Retriever: ...
    def info(self) -> dict[str, Any]: ...


def load_index_manager(kb_dir: Path, config: dict[str, Any] | None = None) -> IndexLike | None:
    """The retrieval side's IndexManager for `kb_dir`, or None while that package is not installed."""
    try:
        from knowledge_base.index.manager import IndexManager
    except ModuleNotFoundError as exc:
        if exc.name in ("knowledge_base.index", "knowledge_base.index.manager"):
            return None
        raise
    return IndexManager(kb_dir, config)


@dataclass(slots=True)
class IndexResult:
    """What keeping the index in step did: fresh, updated, rebuilt, empty, unavailable or failed."""

    state: str
    kb_version: int
    indexed_version: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.state != "failed"

    def describe(self) -> str:
        if self.state == "failed":
            return (
                f"index NOT updated ({self.error}); the knowledge base itself is saved — "
                "run `kefu kb reindex` to repair the index"
            )
        return {
            "fresh": "index up to date",
            "updated": "index updated",
            "rebuilt": "index rebuilt",
            "empty": "no approved scripts, nothing to index",
            "unavailable": "no search index support installed (store only)",
            "disabled": "index not touched",
        }.get(self.state, self.state)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    source: str
    total: int = 0
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    status_changed: list[str] = field(default_factory=list)
    retired_missing: list[str] = field(default_factory=list)
    unchanged: int = 0
    kb_version: int = 0
    dry_run: bool = False
    index: IndexResult | None = None

    @property
    def changed(self) -> int:
        return len(self.created) + len(self.updated) + len(self.status_changed) + len(self.retired_missing)

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        parts = [f"{len(self.created)} new", f"{len(self.updated)} changed"]
        if self.status_changed:
            parts.append(f"{len(self.status_changed)} status changed")
        if self.retired_missing:
            parts.append(f"{len(self.retired_missing)} retired (missing from the file)")
        parts.append(f"{self.unchanged} unchanged")
        text = f"{verb} {self.source}: {self.total} scripts — {', '.join(parts)}; kb version {self.kb_version}"
        if self.index is not None:
            text += f"; {self.index.describe()}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the index result nests as a dict (or None)


class _DryRun(Exception):
    """Raised inside a transaction to roll it back after computing a report."""


class KnowledgeBase:
    """A knowledge-base directory: the script store (kb.sqlite, the source of truth) and its index.

    Every change is one store transaction; after it commits, the index is patched (upsert/remove
    of the changed approved scripts) or rebuilt. If indexing fails, the store keeps the change and
    the next change, `sync_index()` or `kefu kb reindex` repairs the index: the kb_version the index
    was built at is compared with the store's.
    """

    def __init__(
        self,
        kb_dir: str | Path,
        store: ScriptStore,
        *,
        index: IndexLike | None = None,
        index_config: dict[str, Any] | None = None,
        use_index: bool = True,
    ) -> None:
        self.dir = Path(kb_dir)
        self.store = store
        self._index = index
        self._index_config = index_config
        self._use_index = use_index
        self._index_loaded = index is not None

    @classmethod
    def open(
        cls,
        kb_dir: str | Path,
        *,
        create: bool = False,
        backend: str = "sqlite",
        index: IndexLike | None = None,
        index_config: dict[str, Any] | None = None,
        use_index: bool = True,
    ) -> KnowledgeBase:
        """Open the knowledge base in `kb_dir`; `create` makes an empty one when there is none.

        `index` replaces the default IndexManager (tests, other backends); `use_index=False` leaves
        the index alone (read-only tools, bulk scripts that reindex at the end).
        """
        path = Path(kb_dir)
        if path.exists() and not path.is_dir():
            raise KefuError(f"{path}: is a file; --kb takes a knowledge-base directory")
        store = open_store(path, backend, create=create)
        return cls(path, store, index=index, index_config=index_config, use_index=use_index)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------------------

    def get(self, script_id: str) -> Script:
        script = self.store.get(script_id)
        if script is None:
            raise StoreError(f"no script with id {script_id!r} in {self.dir}")
        return script

    def find(self, script_id: str) -> Script | None:
        return self.store.get(script_id)

    def list(
        self, status: str | Iterable[str] | None = None, category: str | None = None, tag: str | None = None
    ) -> list[Script]:
        return self.store.list(status=status, category=category, tag=tag)

    def approved(self) -> list[Script]:
        """The scripts that may be suggested to agents."""
        return self.store.list(status="approved")

    def history(self, script_id: str) -> list[ScriptVersion]:
        versions = self.store.history(script_id)
        if not versions:
            raise StoreError(f"no script with id {script_id!r} in {self.dir}")
        return versions

    def version(self, script_id: str, version: int) -> ScriptVersion:
        found = self.store.version(script_id, version)
        if found is None:
            last = len(self.history(script_id))
            raise StoreError(f"script {script_id} has versions 1–{last}, not {version}")
        return found

    def diff(self, script_id: str, old: int | None = None, new: int | None = None) -> str:
        """A unified diff between two versions of a script (default: the last change)."""
        versions = self.history(script_id)
        new_v = self.version(script_id, new) if new is not None else versions[-1]
        if old is None:
            old_v = self.version(script_id, new_v.version - 1) if new_v.version > 1 else None
        else:
            old_v = self.version(script_id, old)
        a = render_version(old_v) if old_v else []
        b = render_version(new_v)
        a_name = f"{script_id} v{old_v.version} ({old_v.time} {old_v.author})" if old_v else "(none)"
        b_name = f"{script_id} v{new_v.version} ({new_v.time} {new_v.author})"
        return "".join(difflib.unified_diff(a, b, a_name, b_name, n=3))

    def status(self) -> dict[str, Any]:
        """Counts, versions and whether the index is in step with the store."""
        counts = self.store.counts()
        kb_version = self.store.kb_version()
        out: dict[str, Any] = {"kb": str(self.dir), "scripts": sum(counts.values()), **counts, "kb_version": kb_version}
        manager = self._manager()
        if manager is None:
            out["index"] = "unavailable"
            return out
        indexed = self._indexed_version(manager)
        out["index_kb_version"] = indexed
        out["index"] = "missing" if indexed is None else ("fresh" if indexed == kb_version else "stale")
        with contextlib.suppress(Exception):  # info is best effort: status must work on a broken index
            if manager.exists():
                out["index_info"] = manager.info()
        return out

    # -- changing -------------------------------------------------------------------------------

    def import_file(
        self,
        path: str | Path,
        *,
        fmt: str | None = None,
        encoding: str | None = None,
        status: str | None = None,
        author: str | None = None,
        note: str = "",
        dry_run: bool = False,
        retire_missing: bool = False,
    ) -> ImportReport:
        """Create or update scripts from a JSONL, CSV or XLSX file, all in one transaction.

        Every row is validated first; any problem raises ScriptFileError listing all of them and
        nothing is written. New scripts get the row's `status` column, else `status`, else approved.
        Changed scripts keep their status unless the row or `status` names one. Rows whose content
        and status are unchanged create no version, so re-importing a file changes nothing.
        """
        if status is not None and status not in STATUSES:
            raise KefuError(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
        rows = read_scripts(path, fmt=fmt, encoding=encoding, default_status=status or "approved")
        return self.import_scripts(
            rows,
            source=str(path),
            status=status,
            author=author,
            note=note,
            dry_run=dry_run,
            retire_missing=retire_missing,
        )

    def import_scripts(
        self,
        rows: Sequence[ScriptRow | Script],
        *,
        source: str = "<scripts>",
        status: str | None = None,
        author: str | None = None,
        note: str = "",
        dry_run: bool = False,
        retire_missing: bool = False,
    ) -> ImportReport:
        """Import already-parsed scripts (see import_file for the rules)."""
        items = [r if isinstance(r, ScriptRow) else ScriptRow(r, i + 1, True) for i, r in enumerate(rows)]
        ids = [r.script.id for r in items]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise KefuError(f"{source}: duplicate script ids: {', '.join(dupes)}")
        report = ImportReport(source=source, total=len(items), dry_run=dry_run)
        changes: list[Change] = []
        try:
            with self.store.transaction(author=author):
                for row in progress(items, desc="import", unit="script"):
                    new = row.script
                    current = self.store.get(new.id)
                    if current is None:
                        if not row.explicit_status:
                            new.status = status or "approved"  # type: ignore[assignment]
                    elif not row.explicit_status:
                        same = canonical(current.content()) == canonical(new.content())
                        new.status = current.status if same or status is None else status  # type: ignore[assignment]
                    change = self.store.put(new, author=author, note=note)
                    if change is None:
                        report.unchanged += 1
                        continue
                    changes.append(change)
                    if change.action == "create":
                        report.created.append(new.id)
                    elif change.action == "edit":
                        report.updated.append(new.id)
                    else:
                        report.status_changed.append(new.id)
                if retire_missing:
                    present = set(ids)
                    for script in self.store.list(status=("draft", "approved")):
                        if script.id not in present:
                            change = self.store.set_status(
                                script.id, "retired", author=author, note=note or f"not in {source}"
                            )
                            if change is not None:
                                changes.append(change)
                                report.retired_missing.append(script.id)
                if changes:
                    self.store.log(
                        "import",
                        {
                            "source": source,
                            **{k: v for k, v in report.to_dict().items() if k in ("total", "unchanged")},
                            "created": len(report.created),
                            "updated": len(report.updated),
                            "status_changed": len(report.status_changed),
                            "retired_missing": len(report.retired_missing),
                        },
                        author=author,
                    )
                report.kb_version = changes[-1].kb_version if changes else self.store.kb_version()
                if dry_run:
                    raise _DryRun
        except _DryRun:
            return report
        report.index = self._after_commit(changes)
        return report

    def add(self, script: Script, *, approve: bool = False, author: str | None = None, note: str = "") -> Script:
        """Add a new script as a draft (approved right away with approve=True)."""
        script = self._validated(script.content(), "approved" if approve else "draft")
        with self.store.transaction(author=author):
            if self.store.get(script.id) is not None:
                raise StoreError(f"a script with id {script.id!r} already exists; use `kefu kb edit {script.id}`")
            change = self.store.put(script, author=author, action="create", note=note)
        self.last_index = self._after_commit([change] if change else [])
        return self.get(script.id)

    def edit(
        self,
        script_id: str,
        changes: dict[str, Any],
        *,
        status: str | None = None,
        author: str | None = None,
        note: str = "",
    ) -> Script | None:
        """Change fields of a script (a value None removes an extra field); None when nothing changed.

        The script keeps its status unless `status` is given.
        """
        with self.store.transaction(author=author):
            current = self.get(script_id)
            content = current.content()
            for key, value in changes.items():
                if key == "id" and value != script_id:
                    raise StoreError(f"the id of a script cannot be changed ({script_id} → {value})")
                if key in ("status", "version"):
                    raise StoreError(f"{key} is not a content field; use approve/retire to change the status")
                if value is None and key not in CORE_KEYS:
                    content.pop(key, None)
                else:
                    content[key] = value
            updated = self._validated(content, status or current.status)
            change = self.store.put(updated, author=author, note=note)
        self.last_index = self._after_commit([change] if change else [])
        return None if change is None else self.get(script_id)

    def set_status(self, ids: Iterable[str], status: str, *, author: str | None = None, note: str = "") -> list[Change]:
        """Give scripts a status in one transaction; scripts that already have it are left alone."""
        wanted = list(dict.fromkeys(ids))
        with self.store.transaction(author=author):
            missing = [i for i in wanted if self.store.get(i) is None]
            if missing:
                raise StoreError(f"no script with id {', '.join(map(repr, missing))} in {self.dir}")
            changes = [c for i in wanted if (c := self.store.set_status(i, status, author=author, note=note))]
        self.last_index = self._after_commit(changes)
        return changes

    def approve(self, ids: Iterable[str], *, author: str | None = None, note: str = "") -> list[Change]:
        """Approve scripts: from now on they are suggested to agents."""
        return self.set_status(ids, "approved", author=author, note=note)

    def retire(self, ids: Iterable[str], *, author: str | None = None, note: str = "") -> list[Change]:
        """Retire scripts: they stay in the history but are no longer suggested."""
        return self.set_status(ids, "retired", author=author, note=note)

    def _validated(self, content: dict[str, Any], status: str) -> Script:
        raw = {**content, "status": status}
        script, _, problems = parse_script(raw)
        if script is None:
            sid = str(content.get("id") or "?")
            raise KefuError(f"script {sid} is not valid: " + "; ".join(f"{f}: {m}" for f, m in problems))
        return script

    def export(
        self,
        path: str | Path,
        *,
        fmt: str | None = None,
        status: str | Iterable[str] | None = None,
        with_status: bool = True,
    ) -> int:
        """Write the current scripts (optionally only some statuses) as JSONL, CSV or XLSX."""
        return write_scripts(self.store.list(status=status), path, fmt=fmt, with_status=with_status)

    # -- index ----------------------------------------------------------------------------------

    last_index: IndexResult | None = None

    def _manager(self) -> IndexLike | None:
        if not self._use_index:
            return None
        if not self._index_loaded:
            self._index = load_index_manager(self.dir, self._index_config)
            self._index_loaded = True
            if self._index is None:
                log.warning("knowledge_base.index is not installed: there is no search index to keep in step")
        return self._index

    def _indexed_version(self, manager: IndexLike) -> int | None:
        """The kb_version the current index is in step with; None when there is no index.

        The index records the kb_version of its last build or update; the store records the
        kb_version it last synced the index to, which is newer when a change touched no approved
        script (nothing to send to the index). Either is only written after the index is right,
        so the larger one is the truth.
        """
        if not manager.exists():
            return None
        try:
            value = manager.info().get("kb_version")
        except Exception as exc:  # an unreadable index is as good as none: rebuild it
            log.warning("cannot read the index metadata (%s); rebuilding", exc)
            return None
        recorded = self.store.get_meta(INDEX_META_KEY)
        known = [int(v) for v in (value, recorded) if v is not None]
        return max(known) if known else None

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        """Serialise index updates between processes (two CLI runs, the service and a trainer)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: one writer at a time is the user's job
            yield
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / INDEX_LOCK, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _after_commit(self, changes: list[Change]) -> IndexResult:
        result = self._sync(changes, force=False)
        self.last_index = result
        return result

    def sync_index(self, *, force: bool = False) -> IndexResult:
        """Bring the index in step with the store: nothing when fresh, else a full rebuild.

        `force` rebuilds even a fresh index (`kefu kb reindex`).
        """
        result = self._sync([], force=force)
        self.last_index = result
        return result

    def reindex(self) -> IndexResult:
        """Rebuild the index from the approved scripts, built aside and swapped in."""
        result = self.sync_index(force=True)
        if result.state == "rebuilt":
            with contextlib.suppress(KefuError):
                self.store.log("reindex", {"kb_version": result.kb_version})
        return result

    def _sync(self, changes: list[Change], *, force: bool) -> IndexResult:
        manager = self._manager()
        if manager is None:
            return IndexResult("unavailable" if self._use_index else "disabled", self.store.kb_version())
        with self._index_lock():
            current = self.store.kb_version()
            indexed = self._indexed_version(manager)
            if indexed == current and not force:
                return IndexResult("fresh", current, indexed)
            # Net effect per script: status before the first change, after the last one.
            first: dict[str, Change] = {}
            last: dict[str, Change] = {}
            for c in changes:
                first.setdefault(c.id, c)
                last[c.id] = c
            approved_count = self.store.counts()["approved"]
            # Patch the index only when it holds exactly everything before this change set and
            # nothing was committed after it (another process); otherwise rebuild from the store.
            tx = {c.kb_version for c in changes}
            incremental = (
                not force
                and len(tx) == 1
                and indexed == current - 1
                and tx == {current}
                and len(last) <= max(REBUILD_MIN, REBUILD_RATIO * approved_count)
            )
            try:
                if incremental:
                    upserts = [s for i, c in last.items() if c.is_approved and (s := self.store.get(i)) is not None]
                    removes = [i for i, c in last.items() if first[i].was_approved and not c.is_approved]
                    if removes:
                        manager.remove(removes, current)
                    if upserts:
                        manager.upsert(upserts, current)
                    state = "updated"
                else:
                    scripts = self.store.list(status="approved")
                    if not scripts and indexed is None:
                        return IndexResult("empty", current, indexed)
                    manager.rebuild(scripts, current)
                    state = "rebuilt"
                self.store.set_meta(INDEX_META_KEY, str(current))
            except Exception as exc:  # the store is committed: report, keep going, repair next time
                log.error("index update failed: %s", exc)
                log.debug("index update failed", exc_info=True)
                return IndexResult("failed", current, indexed, error=f"{type(exc).__name__}: {exc}")
            return IndexResult(state, current, current)

    def retriever(self) -> Retriever:
        """A retriever over the approved scripts, repairing a stale index first."""
        manager = self._manager()
        if manager is None:
            raise KefuError("search needs knowledge_base.index, which is not installed")
        result = self.sync_index()
        if result.state == "failed":
            raise KefuError(f"the search index of {self.dir} is out of date and cannot be rebuilt: {result.error}")
        return manager.retriever()


_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])")


def render_version(version: ScriptVersion) -> list[str]:
    """A script version as lines for diffs: one field per line, questions and sentences one per line."""
    content = version.content
    lines = [f"status: {version.status}"]
    for key in ("scenario", "category"):
        lines.append(f"{key}: {content.get(key, '')}")
    lines.append("questions:")
    lines += [f"  - {q}" for q in content.get("questions", [])]
    lines.append("script:")
    lines += [f"  {s}" for s in _SENTENCE_END.split(str(content.get("script", ""))) if s.strip()]
    for key in ("keywords", "tags"):
        lines.append(f"{key}: {' | '.join(content.get(key, []))}")
    for key in sorted(k for k in content if k not in CORE_KEYS):
        value = content[key]
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {v}" for v in value]
        else:
            lines.append(f"{key}: {value}")
    return [line + "\n" for line in lines]
