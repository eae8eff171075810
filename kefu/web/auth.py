"""API keys with roles for the service and the web console: off while no key is configured, enforced once one is."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, WebSocket

from kefu.io import KefuError

log = logging.getLogger(__name__)

KEYS_ENV = "KEFU_API_KEYS"  # "key1:agent,key2:supervisor" — handy for containers; a keys file is preferred
ROLES: tuple[str, ...] = ("agent", "supervisor", "trainer", "qa", "admin")
# What each role may do. Admin may do everything.
PERMISSIONS: dict[str, frozenset[str]] = {
    "agent": frozenset({"turns", "feedback", "calls:read", "kb:read", "qa:appeal"}),
    "supervisor": frozenset({"alerts", "calls:read", "feedback:report", "kb:read", "qa:read", "qa:appeal"}),
    "trainer": frozenset({"reload", "kb:read", "kb:write", "feedback:report", "calls:read", "qa:read"}),
    "qa": frozenset({"calls:read", "kb:read", "qa:read", "qa:write", "qa:appeal", "feedback:report"}),
}
PERMISSIONS["admin"] = frozenset().union(*PERMISSIONS.values())
# The web console keeps the key the user signed in with in this cookie (HttpOnly, SameSite=Strict).
COOKIE_NAME = "kefu_key"


class AuthConfigError(KefuError):
    """The keys file or KEFU_API_KEYS is malformed."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's name and role (a local user with every right when auth is off)."""

    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


LOCAL = Principal("local", "admin")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """Key digests → principals. Keys are compared by SHA-256 digest in constant time; files may hold
    plain keys (`key`) or only their digests (`sha256`)."""

    def __init__(self, entries: list[tuple[str, Principal]] | None = None) -> None:
        self._entries = list(entries or [])

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: str | None) -> Principal | None:
        if not key:
            return None
        digest = _digest(key)
        found = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    @classmethod
    def load(cls, path: str | Path | None = None, env: str | None = None) -> ApiKeys:
        """Keys from a JSON file ({"keys": [{"key"|"sha256", "role", "name"}]}) and/or KEFU_API_KEYS."""
        entries: list[tuple[str, Principal]] = []
        if path is not None:
            p = Path(path)
            try:
                raw: Any = json.loads(p.read_text(encoding="utf-8"))
            except OSError as exc:
                raise AuthConfigError(f"{p}: cannot read the keys file ({exc.strerror})") from None
            except json.JSONDecodeError as exc:
                raise AuthConfigError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg})") from None
            items = raw.get("keys") if isinstance(raw, dict) else raw
            if not isinstance(items, list):
                raise AuthConfigError(f"{p}: expected {{\"keys\": [{{\"key\", \"role\", \"name\"}}, …]}}")
            for i, item in enumerate(items):
                where = f"{p}: keys[{i}]"
                if not isinstance(item, dict):
                    raise AuthConfigError(f"{where}: must be an object with key (or sha256), role and name")
                role = item.get("role")
                if role not in ROLES:
                    raise AuthConfigError(f"{where}.role: must be one of {', '.join(ROLES)}, got {role!r}")
                if isinstance(item.get("sha256"), str) and len(item["sha256"]) == 64:
                    digest = item["sha256"].lower()
                elif isinstance(item.get("key"), str) and len(item["key"]) >= 8:
                    digest = _digest(item["key"])
                else:
                    raise AuthConfigError(f"{where}: needs key (at least 8 characters) or sha256 (64 hex digits)")
                entries.append((digest, Principal(str(item.get("name") or f"{role}-{i}"), role)))
        value = os.environ.get(KEYS_ENV, "") if env is None else env
        for i, part in enumerate(p.strip() for p in value.split(",") if p.strip()):
            key, _, role = part.rpartition(":")
            if role not in ROLES or len(key) < 8:
                raise AuthConfigError(
                    f"{KEYS_ENV} item {i + 1}: expected KEY:ROLE with a key of at least 8 characters and a role "
                    f"in {', '.join(ROLES)}, got {part[:4]}…:{role}")
            entries.append((_digest(key), Principal(f"env-{i + 1}", role)))
        if entries:
            log.info("API keys enforced: %d keys", len(entries))
        return cls(entries)


def _key_from(headers: Any, query: Any) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query.get("api_key")


def key_from_request(request: Request | WebSocket) -> str | None:
    """The API key of a request: X-API-Key, a bearer token, ?api_key=, or the console's sign-in cookie."""
    return _key_from(request.headers, request.query_params) or request.cookies.get(COOKIE_NAME)


def check(keys: ApiKeys, key: str | None, permission: str) -> Principal:
    """The caller's principal, or an HTTP 401 (no or unknown key) / 403 (role lacks the permission)."""
    if not keys.enabled:
        return LOCAL
    principal = keys.lookup(key)
    if principal is None:
        raise HTTPException(401, "missing or unknown API key (send it as X-API-Key or Authorization: Bearer)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not principal.can(permission):
        raise HTTPException(403, f"role {principal.role!r} may not use this endpoint (needs {permission!r})")
    return principal


def require(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency that enforces `permission` on an HTTP endpoint."""

    async def dependency(request: Request) -> Principal:  # async: no thread-pool hop on every request
        return check(request.app.state.keys, key_from_request(request), permission)

    return dependency


def check_ws(websocket: WebSocket, permission: str) -> Principal | None:
    """The principal of a WebSocket client, or None when it must be refused (the caller closes with 1008)."""
    keys: ApiKeys = websocket.app.state.keys
    try:
        return check(keys, key_from_request(websocket), permission)
    except HTTPException:
        return None
