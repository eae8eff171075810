"""Index lifecycle: versioned builds under DIR/index, atomic swaps, and an append-only update journal."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kefu import __version__
from kefu.io import KefuError
from knowledge_base.index.dense import DenseConfig
from knowledge_base.index.hybrid import HybridRetriever, SearchSettings, script_from_dict, script_to_dict
from knowledge_base.schema import Script
from models.encoders import load_encoder
from models.encoders.base import Encoder
from models.encoders.factory import default_encoder_path

log = logging.getLogger(__name__)

INDEX_DIR = "index"
CURRENT = "CURRENT"
BUILDS = "builds"
JOURNAL = "journal.jsonl"
FORMAT = 1
CONFIG_KEYS = ("encoder", "dense", "search", "compact_every", "keep_builds")


class KbIndexError(KefuError):
    """The index is missing, unreadable, or was asked something it cannot do."""


class IndexManager:
    """Owns DIR/index: `CURRENT` names the live build in `builds/<id>/`.

    - A full rebuild writes a new build directory beside the live one and then replaces `CURRENT`
      with os.replace, so a reader sees the old index or the new one, never a half-written one.
    - Incremental updates (upsert, remove) are applied in memory and appended to the live build's
      `journal.jsonl` as whole lines; a reader replays complete lines. After `compact_every`
      journal lines the state is written as a new build (same swap) and the journal starts empty.
    - Writers take an exclusive lock on DIR/index/.lock; readers take none.

    Config (all optional; stored in the build's config.json): `encoder` (a directory or `builtin`),
    `dense` (see DenseConfig), `search` (see SearchSettings), `compact_every` (default 200),
    `keep_builds` (previous builds kept for readers still loading them, default 1).
    """

    def __init__(self, kb_dir: Path, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        unknown = set(config) - set(CONFIG_KEYS)
        if unknown:
            raise KbIndexError(
                f"unknown index settings: {', '.join(sorted(unknown))} (known: {', '.join(CONFIG_KEYS)})"
            )
        try:
            DenseConfig.from_dict(config.get("dense"))
            SearchSettings(**config.get("search", {}))
        except (TypeError, ValueError) as exc:
            raise KbIndexError(f"bad index settings: {exc}") from exc
        self.kb_dir = Path(kb_dir)
        self.root = self.kb_dir / INDEX_DIR
        self.config = config
        self._retriever: HybridRetriever | None = None

    # --- paths and state ------------------------------------------------------------------------
    def current_id(self) -> str | None:
        try:
            build = (self.root / CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return build if build and (self.root / BUILDS / build / "meta.json").exists() else None

    def current_dir(self) -> Path:
        build = self.current_id()
        if build is None:
            raise KbIndexError(
                f"{self.kb_dir}: no search index yet (import scripts with `kefu kb import FILE --kb DIR`, "
                "or build it from the store with `kefu kb reindex --kb DIR`)"
            )
        return self.root / BUILDS / build

    def exists(self) -> bool:
        return self.current_id() is not None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _stored_config(self, build_dir: Path) -> dict[str, Any]:
        return json.loads((build_dir / "config.json").read_text(encoding="utf-8"))

    # --- the public contract --------------------------------------------------------------------
    def rebuild(self, scripts: list[Script], kb_version: int) -> None:
        """Index `scripts` from scratch in a new build directory and swap it in atomically."""
        with self._writing():
            encoder, encoder_src = self._encoder_for_build(scripts)
            stored = self._stored_config(self.current_dir()) if self.exists() else {}
            dense = {**stored.get("dense", {}), **self.config.get("dense", {})}
            search = {**stored.get("search", {}), **self.config.get("search", {})}
            retriever = HybridRetriever(encoder, DenseConfig.from_dict(dense), SearchSettings(**search))
            t0 = time.perf_counter()
            retriever.build(scripts)
            log.info("indexed %d scripts in %.1fs", retriever.size, time.perf_counter() - t0)
            self._publish(
                retriever,
                kb_version,
                {"encoder_source": encoder_src, "build_seconds": round(time.perf_counter() - t0, 3), "kind": "rebuild"},
            )

    def upsert(self, scripts: list[Script], kb_version: int) -> None:
        """Add or replace scripts in the live index (retired ones are removed); creates it if missing."""
        if not scripts:
            return
        if not self.exists():
            self.rebuild(scripts, kb_version)
            return
        with self._writing():
            r = self._load_locked()
            r.upsert(scripts)
            self._journal({"op": "upsert", "kb_version": kb_version, "scripts": [script_to_dict(s) for s in scripts]})

    def remove(self, ids: list[str], kb_version: int) -> None:
        """Delete scripts from the live index (unknown ids are ignored)."""
        if not ids or not self.exists():
            return
        with self._writing():
            r = self._load_locked()
            r.remove(ids)
            self._journal({"op": "remove", "kb_version": kb_version, "ids": list(ids)})

    def retriever(self) -> HybridRetriever:
        """The live index in memory (loaded once, then kept current by this manager's own updates;
        call `refresh()` to pick up changes made by another process)."""
        if self._retriever is None:
            self._retriever = self._load()
            # The index is millions of long-lived objects: keep the cyclic GC from rescanning them
            # during searches (a full collection over them is a multi-millisecond pause at 10k scripts).
            gc.freeze()
        return self._retriever

    def refresh(self) -> bool:
        """Reload if another process swapped in a build or appended updates; True when something changed."""
        if self._retriever is None:
            self._retriever = self._load()
            return True
        src = self._retriever.source
        build = self.current_id()
        if build != src.get("build"):
            self._retriever = self._load()
            return True
        journal = self.root / BUILDS / build / JOURNAL
        size = journal.stat().st_size if journal.exists() else 0
        if size > src.get("journal_offset", 0):
            self._replay(self._retriever, journal)
            return True
        return False

    def info(self) -> dict[str, Any]:
        """Build metadata (encoder, counts, kb_version, build time, index kind) plus journal state."""
        path = self.current_dir()
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        updates, version = 0, meta.get("kb_version")
        journal = path / JOURNAL
        if journal.exists():
            for entry in _read_journal(journal, 0)[0]:
                updates += 1
                version = entry.get("kb_version", version)
        meta.update({"kb_version": version, "updates_since_build": updates, "path": str(path)})
        if self._retriever is not None and self._retriever.source.get("build") == meta["build_id"]:
            meta["counts"] = {**meta.get("counts", {}), "scripts": self._retriever.size}
        return meta

    def encoder(self) -> Encoder:
        """The knowledge base's encoder (the one saved with the live index)."""
        if self._retriever is not None:
            return self._retriever.encoder
        return load_encoder(self.current_dir() / "encoder")

    # --- internals ------------------------------------------------------------------------------
    def _encoder_for_build(self, scripts: list[Script]) -> tuple[Encoder, str]:
        choice = self.config.get("encoder")
        if choice:
            return load_encoder(choice), str(choice)
        if self.exists():  # keep the knowledge base's encoder across rebuilds
            return load_encoder(self.current_dir() / "encoder"), "previous build"
        found = default_encoder_path()
        if found is not None:
            return load_encoder(found), str(found)
        from models.encoders.builtin import NgramEncoder

        log.warning(
            "no trained encoder found: using an untrained character n-gram encoder fitted on the scripts "
            "(train one with `python -m training.encoder -o $KEFU_HOME/models/kb-encoder`)"
        )
        texts = [t for s in scripts for t in [*s.questions, s.scenario, s.script]]
        return NgramEncoder.fit_unsupervised(texts), "untrained fallback"

    def _publish(self, retriever: HybridRetriever, kb_version: int, extra: dict[str, Any]) -> None:
        """Write `retriever` as a new build beside the live one, then swap CURRENT (caller holds the lock)."""
        builds = self.root / BUILDS
        builds.mkdir(parents=True, exist_ok=True)
        build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        tmp = builds / f".tmp-{build_id}"
        tmp.mkdir()
        try:
            retriever.encoder.save(tmp / "encoder")
            counts = retriever.save(tmp)
            config = {
                "format": FORMAT,
                "dense": retriever.dense.config.to_dict(),
                "dense_kind": counts["dense_kind"],
                "search": _settings_dict(retriever.settings),
                "fusion": retriever.fusion.to_dict(),
                "encoder": retriever.encoder.describe(),
            }
            _write_json(tmp / "config.json", config)
            meta = {
                "build_id": build_id,
                "kb_version": kb_version,
                "built_at": datetime.now(UTC).isoformat(),
                "kefu_version": __version__,
                "encoder": retriever.encoder.describe(),
                "counts": {"scripts": counts["scripts"], "rows": counts["rows"]},
                "dense_kind": counts["dense_kind"],
                "calibration": retriever.fusion.calibration,
                **extra,
            }
            _write_json(tmp / "meta.json", meta)
            _fsync_tree(tmp)
            os.replace(tmp, builds / build_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer = self.root / f".{CURRENT}.tmp"
        pointer.write_text(build_id + "\n", encoding="utf-8")
        with open(pointer, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(pointer, self.root / CURRENT)
        retriever.source = {"build": build_id, "journal_offset": 0}
        self._retriever = retriever
        self._prune(build_id)
        log.info("index build %s is live (%d scripts)", build_id, counts["scripts"])

    def _prune(self, keep: str) -> None:
        builds = self.root / BUILDS
        old = sorted(
            (p for p in builds.iterdir() if p.name != keep and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for p in old[int(self.config.get("keep_builds", 1)) :]:
            shutil.rmtree(p, ignore_errors=True)
        for p in builds.glob(".tmp-*"):  # left by a crashed build
            if time.time() - p.stat().st_mtime > 3600:
                shutil.rmtree(p, ignore_errors=True)

    def _load(self) -> HybridRetriever:
        path = self.current_dir()
        config = self._stored_config(path)
        if self.config.get("search"):
            config["search"] = {**config.get("search", {}), **self.config["search"]}
        if self.config.get("dense"):
            config["dense"] = {**config.get("dense", {}), **self.config["dense"]}
        try:
            r = HybridRetriever.load(path, load_encoder(path / "encoder"), config)
        except (OSError, ValueError, KeyError) as exc:
            raise KbIndexError(f"{path}: cannot read the index: {exc}") from exc
        r.source = {"build": path.name, "journal_offset": 0}
        journal = path / JOURNAL
        if journal.exists():
            self._replay(r, journal)
        return r

    def _load_locked(self) -> HybridRetriever:
        r = self.retriever()
        if r.source.get("build") != self.current_id():
            self._retriever = r = self._load()
        else:
            self.refresh()
            r = self._retriever  # type: ignore[assignment]
        return r

    def _replay(self, r: HybridRetriever, journal: Path) -> None:
        entries, offset = _read_journal(journal, r.source.get("journal_offset", 0))
        for e in entries:
            if e["op"] == "upsert":
                r.upsert([script_from_dict(d) for d in e["scripts"]])
            elif e["op"] == "remove":
                r.remove(e["ids"])
        r.source["journal_offset"] = offset
        r.source["journal_lines"] = r.source.get("journal_lines", 0) + len(entries)

    def _journal(self, entry: dict[str, Any]) -> None:
        r = self._retriever
        assert r is not None
        path = self.root / BUILDS / r.source["build"] / JOURNAL
        line = json.dumps({**entry, "at": datetime.now(UTC).isoformat()}, ensure_ascii=False) + "\n"
        with open(path, "ab") as fh:
            fh.write(line.encode("utf-8"))  # one write: a reader sees the whole line or none of it
            fh.flush()
            os.fsync(fh.fileno())
            r.source["journal_offset"] = fh.tell()
        lines = r.source["journal_lines"] = r.source.get("journal_lines", 0) + 1
        if lines >= int(self.config.get("compact_every", 200)):
            meta = json.loads((path.parent / "meta.json").read_text(encoding="utf-8"))
            self._publish(
                r, entry["kb_version"], {"encoder_source": meta.get("encoder_source", ""), "kind": "compaction"}
            )


def _read_journal(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete journal lines after byte `offset` (a line still being written is left for later)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    entries = [json.loads(line) for line in data[:end].decode("utf-8").splitlines() if line.strip()]
    return entries, offset + end


def _settings_dict(s: SearchSettings) -> dict[str, Any]:
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
