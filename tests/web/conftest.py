"""Web console fixtures: `kefu serve` on loopback over the bundled scripts, role keys, headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.assist_support import REPO, uvicorn_server

CHROMIUM = os.environ.get("KEFU_CHROMIUM", "/usr/bin/chromium")
# `make test` sets this: in CI a missing browser is a failure, not a skip.
REQUIRE_BROWSER = os.environ.get("KEFU_REQUIRE_BROWSER") == "1"
# `make screenshots` sets this: the page tests then refresh the pictures in docs/console/.
SCREENSHOT_DIR = REPO / "docs" / "console"
TAKE_SCREENSHOTS = os.environ.get("KEFU_SCREENSHOTS") == "1"

# One key per role; names are what the console shows and what feedback, edits and verdicts are recorded under.
KEYS = {
    "agent": ("agent-key-0001", "张丽"),
    "trainer": ("train-key-0001", "王培训"),
    "qa": ("qa-key-00001", "李质检"),
    "supervisor": ("super-key-001", "赵班长"),
    "admin": ("admin-key-001", "管理员"),
}
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--lang=zh-CN"]


@pytest.fixture(scope="session")
def console_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KEFU_HOME of the console server: a knowledge base imported from the bundled scripts."""
    from knowledge_base.kb import KnowledgeBase

    home = tmp_path_factory.mktemp("console-home")
    with KnowledgeBase.open(home / "kb", create=True) as kb:
        kb.import_file(REPO / "knowledge_base" / "data" / "scripts.jsonl")
    keys = {"keys": [{"key": key, "role": role, "name": name} for role, (key, name) in KEYS.items()]}
    (home / "keys.json").write_text(json.dumps(keys, ensure_ascii=False), encoding="utf-8")
    return home


@pytest.fixture(scope="session")
def console_url(console_home: Path) -> Iterator[str]:
    """`kefu serve` with role keys (no classifier: lexicon and phrase signals), shared by the page tests.

    Tests change its state (feedback, edits, verdicts): use ids and texts of your own."""
    env = {"KEFU_HOME": str(console_home), "KEFU_API_KEYS": ""}
    args = ["-m", "kefu", "serve", "--kb", str(console_home / "kb"), "--keys", str(console_home / "keys.json"),
            "--no-model", "--reload-interval", "0.5"]
    with uvicorn_server(args, env, timeout=120) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium (Debian's package) driven by Playwright."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        message = f"Chromium not found at {CHROMIUM} (install Debian's chromium, or run `make test`)"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page_as(browser, console_url: str) -> Iterator[Callable[[str], object]]:
    """Open a fresh browser context signed in (through the sign-in page) with the key of a role."""
    contexts = []

    def open_as(role: str) -> object:
        context = browser.new_context(base_url=console_url, locale="zh-CN", viewport={"width": 1400, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/console/login")
        page.fill("#key", KEYS[role][0])
        page.click("button[type=submit]")
        page.wait_for_url("**/console/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def screenshot(page: object, name: str) -> None:
    """Save docs/console/NAME.png when KEFU_SCREENSHOTS=1 (`make screenshots`); otherwise do nothing."""
    if TAKE_SCREENSHOTS:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)
