"""Hot reload: watch the knowledge-base index's version and swap a freshly loaded retriever into the engine."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Protocol

from assist.engine import AssistEngine
from knowledge_base.schema import Retriever

log = logging.getLogger(__name__)


class IndexSource(Protocol):
    """Where retrievers come from: a cheap version check and a (slow) load."""

    def version(self) -> str | None:
        """The index's current version (kb_version and build time), None when there is no index yet."""
        ...

    def load(self) -> Retriever: ...


class KbIndexSource:
    """The search index of a knowledge-base directory (knowledge_base.index's IndexManager)."""

    def __init__(self, kb_dir: str | Path) -> None:
        self.kb_dir = Path(kb_dir)

    def _manager(self) -> Any | None:
        from knowledge_base.kb import load_index_manager

        return load_index_manager(self.kb_dir)

    def version(self) -> str | None:
        manager = self._manager()
        if manager is None or not manager.exists():
            return None
        info = manager.info()
        stamp = next((info[k] for k in ("built_at", "build_time", "built", "created", "time", "updated_at")
                      if info.get(k)), "")
        return f"{info.get('kb_version')}@{stamp}" if stamp else str(info.get("kb_version"))

    def load(self) -> Retriever:
        manager = self._manager()
        if manager is None:
            raise RuntimeError("knowledge_base.index is not installed")
        return manager.retriever()


class Reloader:
    """Polls `source.version()` every `interval_s` in a daemon thread; a new version is loaded aside and swapped
    in with one assignment, so turns in flight finish on the retriever they started with and none fails.
    """

    def __init__(self, engine: AssistEngine, source: IndexSource | None, interval_s: float = 2.0) -> None:
        self.engine = engine
        self.source = source
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one load at a time (watcher and POST /v1/admin/reload)
        self._thread: threading.Thread | None = None
        self.last_error = ""
        self.reloads = 0

    def check(self, force: bool = False) -> tuple[bool, str]:
        """Load the index when its version changed (or always with force); returns (reloaded, message)."""
        if self.source is None:
            return False, "no knowledge base configured"
        with self._lock:
            try:
                version = self.source.version()
            except Exception as exc:  # a half-written index must not stop the watcher
                self.last_error = f"cannot read the index version: {exc}"
                log.warning("%s", self.last_error)
                return False, self.last_error
            if version is None:
                return False, "no index yet"
            if version == self.engine.kb_version and not force:
                return False, "up to date"
            try:
                retriever = self.source.load()
            except Exception as exc:
                self.last_error = f"cannot load index {version}: {exc}"
                log.error("%s; still serving %s", self.last_error, self.engine.kb_version)
                return False, self.last_error
            self.engine.set_retriever(retriever, version)
            self.reloads += 1
            self.last_error = ""
            return True, f"serving {version}"

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check()

    def start(self) -> None:
        if self.source is None or self.interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="kefu-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
