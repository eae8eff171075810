"""Settings: the data home where knowledge bases, models and stores live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "KEFU_HOME"
DEFAULT_HOME = "./var"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where kefu keeps its data; every path can be overridden on the command line."""

    home: Path

    @classmethod
    def from_env(cls) -> Settings:
        return cls(home=Path(os.environ.get(HOME_ENV) or DEFAULT_HOME))

    @property
    def kb_dir(self) -> Path:
        return self.home / "kb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def review_db(self) -> Path:
        return self.home / "review.sqlite"

    @property
    def jobs_dir(self) -> Path:
        """Background scoring jobs of the web console (uploads and results)."""
        return self.home / "qa" / "jobs"

    def describe(self) -> dict[str, str]:
        return {
            "home": str(self.home.resolve()),
            "kb": str(self.kb_dir.resolve()),
            "models": str(self.models_dir.resolve()),
            "review_db": str(self.review_db.resolve()),
            "jobs": str(self.jobs_dir.resolve()),
        }


def get_settings() -> Settings:
    return Settings.from_env()
