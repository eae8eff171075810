"""A uvicorn factory for the assist tests: the real service with the fake retriever over bundled scripts.

The index "version" is the content of $ASSIST_TEST_INDEX (script ids, comma-separated): a test rewrites the
file to make the running server hot-reload a different knowledge base.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from assist.engine import AssistEngine
from assist.service.app import create_app
from assist.service.settings import ServiceSettings
from assist.signals import LexiconTaboo, PhraseOpening, PhraseRisk
from tests.assist_support import FakeRetriever, bundled_scripts


class FileSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def version(self) -> str | None:
        text = self.path.read_text(encoding="utf-8").strip()
        return text or None

    def load(self) -> FakeRetriever:
        ids = tuple(i.strip() for i in self.path.read_text(encoding="utf-8").split(",") if i.strip())
        return FakeRetriever(bundled_scripts(ids))


def create() -> FastAPI:
    settings = ServiceSettings.from_env()
    engine = AssistEngine(None, config=settings.engine, taboo=LexiconTaboo(), risk=PhraseRisk(),
                          opening=PhraseOpening())
    source = FileSource(Path(os.environ["ASSIST_TEST_INDEX"]))
    return create_app(settings, engine=engine, source=source)
