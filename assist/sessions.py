"""Live call sessions: a thread-safe in-memory store with idle expiry and a cap (oldest idle evicted)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from assist.engine import AssistError, CallSession

log = logging.getLogger(__name__)


class SessionStore:
    """Sessions by call id, least recently used first.

    `ttl_s`: a session idle that long is dropped (checked on every access, amortised, and by `sweep`).
    `max_sessions`: when a new call would exceed it, the least recently used session is evicted (logged).
    Single-process: with several workers, run single-worker instances routed by call id (docs/assist.md).
    """

    def __init__(self, max_sessions: int = 10_000, ttl_s: float = 1800.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise AssistError(f"max_sessions must be an integer >= 1, got {max_sessions!r}")
        if ttl_s <= 0:
            raise AssistError(f"ttl_s must be > 0 seconds, got {ttl_s!r}")
        self.max_sessions = max_sessions
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._sessions: OrderedDict[str, CallSession] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self.expired = 0
        self.created = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, call_id: str) -> CallSession | None:
        """The live session of a call, or None (unknown, ended or expired)."""
        now = self.clock()
        with self._lock:
            s = self._sessions.get(call_id)
            if s is None:
                return None
            if now - s.last_seen > self.ttl_s:
                del self._sessions[call_id]
                self.expired += 1
                log.info("call %s expired after %.0f s idle", call_id, now - s.last_seen)
                return None
            self._sessions.move_to_end(call_id)
            return s

    def get_or_create(self, call_id: str) -> tuple[CallSession, bool]:
        """The call's session, created when new; returns (session, created)."""
        now = self.clock()
        with self._lock:
            s = self._sessions.get(call_id)
            if s is not None and now - s.last_seen <= self.ttl_s:
                s.last_seen = now
                self._sessions.move_to_end(call_id)
                return s, False
            if s is not None:
                del self._sessions[call_id]
                self.expired += 1
            self._expire_locked(now, limit=8)
            while len(self._sessions) >= self.max_sessions:
                old_id, old = self._sessions.popitem(last=False)
                self.evicted += 1
                log.warning("session limit %d reached: evicted call %s (idle %.0f s)", self.max_sessions, old_id,
                            now - old.last_seen)
            s = CallSession(call_id, now)
            self._sessions[call_id] = s
            self.created += 1
            return s, True

    def commit(self, session: CallSession, loaded_version: int) -> bool:
        """Nothing to save in memory (the engine changed the session in place under its lock)."""
        return True

    def end(self, call_id: str) -> CallSession | None:
        """Remove a call; returns its last state, or None when it was not live."""
        with self._lock:
            return self._sessions.pop(call_id, None)

    def _expire_locked(self, now: float, limit: int | None = None) -> int:
        n = 0
        while self._sessions:
            call_id, s = next(iter(self._sessions.items()))
            if now - s.last_seen <= self.ttl_s or (limit is not None and n >= limit):
                break
            del self._sessions[call_id]
            self.expired += 1
            n += 1
            log.info("call %s expired after %.0f s idle", call_id, now - s.last_seen)
        return n

    def sweep(self) -> int:
        """Drop every expired session; returns how many."""
        with self._lock:
            return self._expire_locked(self.clock())

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def stats(self) -> dict[str, int]:
        return {"live": len(self._sessions), "max": self.max_sessions, "created": self.created,
                "expired": self.expired, "evicted": self.evicted}
