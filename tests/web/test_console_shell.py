"""The console shell over HTTP and in the browser: sign-in, role-based navigation, refusals, offline assets."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.web.conftest import KEYS, screenshot

pytestmark = pytest.mark.browser


def test_pages_need_a_key_and_sign_in_returns_to_the_page(console_url: str) -> None:
    with httpx.Client(base_url=console_url, timeout=30, follow_redirects=False) as c:
        r = c.get("/console/kb/")
        assert r.status_code == 303 and r.headers["location"] == "/console/login?next=%2Fconsole%2Fkb%2F"
        r = c.post("/console/login", data={"key": "wrong-key-123", "next": "/console/kb/"})
        assert r.status_code == 401 and "密钥无效" in r.text
        r = c.post("/console/login", data={"key": KEYS["trainer"][0], "next": "/console/kb/"})
        assert r.status_code == 303 and r.headers["location"] == "/console/kb/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        # An outside address as the target is ignored (no open redirect).
        r = c.post("/console/login", data={"key": KEYS["trainer"][0], "next": "https://evil.example/"})
        assert r.headers["location"] == "/console/"


def test_roles_see_only_their_pages_and_are_refused_the_others(console_url: str) -> None:
    with httpx.Client(base_url=console_url, timeout=30) as c:
        c.cookies.set("kefu_key", KEYS["agent"][0])
        menu = c.get("/console/").text.split('class="mainnav"')[1].split("</nav>")[0]
        nav = re.findall(r'<a href="(/console/[^"]*)"', menu)
        # Agents get the panel, the script library to read and their appeals; no QA results.
        assert nav == ["/console/agent/", "/console/kb/", "/console/qa/appeals"]
        r = c.get("/console/qa/")
        assert r.status_code == 403 and "无权" in r.text and "qa:read" in r.text
        # The cookie also authorises the JSON API, with the same role rules.
        assert c.post("/v1/calls/SHELL1/turns", json={"role": "customer", "text": "我家停电了"}).status_code == 200
        assert c.post("/v1/admin/reload").status_code == 403


def test_sign_in_in_the_browser_and_no_outside_requests(page_as, console_url: str) -> None:
    page = page_as("admin")
    outside: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(console_url) else outside.append(req.url))
    page.goto("/console/")
    nav = page.locator(".mainnav a").all_inner_texts()
    assert nav == ["坐席助手", "话术库", "质检"]
    assert "管理员" in page.inner_text(".who")
    screenshot(page, "home")
    page.click("text=退出")
    page.wait_for_url("**/console/login")
    assert outside == []
