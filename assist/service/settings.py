"""Service settings: KB and model paths, limits, sessions, keys; from arguments or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from assist.engine import AssistError, EngineConfig
from kefu.settings import get_settings

# Environment variables read by `ServiceSettings.from_env` (so that every uvicorn worker gets the same settings).
ENV_PREFIX = "KEFU_ASSIST_"


@dataclass(frozen=True)
class ServiceSettings:
    """Everything `create_app` needs. Paths that are None are left out (no feedback DB, no classifier…)."""

    kb_dir: Path | None = None
    model_dir: Path | None = None  # classifier; None: lexicon and phrase signals only
    feedback_db: Path | None = None
    keys_file: Path | None = None  # API keys with roles; none configured: auth is off (local demo)
    alerts_db: Path | None = None  # shared alert bus for several workers/instances; None: in memory
    session_db: Path | None = None  # sessions shared by several workers on one host; None: in memory
    review_db: Path | None = None  # QA review store behind the console's QA pages; None: those pages are off
    jobs_dir: Path | None = None  # the console's background scoring jobs (uploads, results); None: no uploads
    max_sessions: int = 10_000
    session_ttl_s: float = 1800.0
    max_body_bytes: int = 16_384
    reload_interval_s: float = 2.0  # how often the knowledge-base index is checked for a new version
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if self.max_body_bytes < 256:
            raise AssistError(f"max_body_bytes must be >= 256, got {self.max_body_bytes}")
        if self.reload_interval_s < 0:
            raise AssistError(f"reload_interval_s must be >= 0 (0 turns watching off), got {self.reload_interval_s}")
        if self.max_sessions < 1:
            raise AssistError(f"max_sessions must be >= 1, got {self.max_sessions}")
        if self.session_ttl_s <= 0:
            raise AssistError(f"session_ttl_s must be > 0, got {self.session_ttl_s}")

    @property
    def max_text_chars(self) -> int:
        return self.engine.max_text_chars

    def to_env(self) -> dict[str, str]:
        """Environment for worker processes (uvicorn --workers re-imports the app in each)."""
        env = {}
        for name in ("kb_dir", "model_dir", "feedback_db", "keys_file", "alerts_db", "session_db", "review_db",
                     "jobs_dir"):
            value = getattr(self, name)
            if value is not None:
                env[ENV_PREFIX + name.upper()] = str(value)
        for name in ("max_sessions", "session_ttl_s", "max_body_bytes", "reload_interval_s"):
            env[ENV_PREFIX + name.upper()] = str(getattr(self, name))
        env[ENV_PREFIX + "K"] = str(self.engine.k)
        if not self.engine.follow_index_threshold:  # unset: workers follow the index's calibrated threshold
            env[ENV_PREFIX + "MIN_SCORE"] = str(self.engine.min_score)
        env[ENV_PREFIX + "RISK_THRESHOLD"] = str(self.engine.risk_threshold)
        return env

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """Settings from KEFU_ASSIST_* variables, defaulting the KB to $KEFU_HOME/kb."""
        env = os.environ

        def path(name: str, default: Path | None = None) -> Path | None:
            value = env.get(ENV_PREFIX + name)
            return Path(value) if value else default

        def number(name: str, kind: type, default: float) -> float:
            value = env.get(ENV_PREFIX + name)
            if not value:
                return default
            try:
                return kind(value)
            except ValueError:
                raise AssistError(f"{ENV_PREFIX + name} must be a number, got {value!r}") from None

        home = get_settings()
        min_score = float(number("MIN_SCORE", float, EngineConfig().min_score))
        engine = EngineConfig(
            k=int(number("K", int, 3)),
            min_score=min_score,
            follow_index_threshold=not env.get(ENV_PREFIX + "MIN_SCORE"),
            confident_score=max(EngineConfig().confident_score, min_score),
            risk_threshold=float(number("RISK_THRESHOLD", float, EngineConfig().risk_threshold)),
        )
        return cls(
            kb_dir=path("KB_DIR", home.kb_dir),
            model_dir=path("MODEL_DIR"),
            feedback_db=path("FEEDBACK_DB", home.home / "assist" / "feedback.sqlite"),
            keys_file=path("KEYS_FILE"),
            alerts_db=path("ALERTS_DB"),
            session_db=path("SESSION_DB"),
            review_db=path("REVIEW_DB", home.review_db),
            jobs_dir=path("JOBS_DIR", home.jobs_dir),
            max_sessions=int(number("MAX_SESSIONS", int, 10_000)),
            session_ttl_s=float(number("SESSION_TTL_S", float, 1800.0)),
            max_body_bytes=int(number("MAX_BODY_BYTES", int, 16_384)),
            reload_interval_s=float(number("RELOAD_INTERVAL_S", float, 2.0)),
            engine=engine,
        )
