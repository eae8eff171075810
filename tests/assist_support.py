"""Fakes and helpers for the assist tests: a small bigram retriever over bundled scripts, a fake classifier,
and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from kefu.text import normalize
from knowledge_base.schema import Hit, Script
from models.classifier_base import CallScores

REPO = Path(__file__).resolve().parents[1]
SCRIPT_IDS = ("K0001", "K0023", "K0033", "K0038", "K0123", "K0124", "K0125", "K0133", "K0135", "K0142")


def bundled_scripts(ids: Sequence[str] = SCRIPT_IDS) -> list[Script]:
    out = []
    for line in (REPO / "knowledge_base" / "data" / "scripts.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if d["id"] in ids:
            out.append(Script(id=d["id"], scenario=d["scenario"], questions=d["questions"], script=d["script"],
                              category=d.get("category", ""), keywords=d.get("keywords", []),
                              tags=d.get("tags", [])))
    return out


def _grams(text: str) -> set[str]:
    n = normalize(text)
    return {n[i : i + 2] for i in range(len(n) - 1)}


class FakeRetriever:
    """Character-bigram Dice similarity against each script's questions; a stand-in calibrated score."""

    def __init__(self, scripts: Sequence[Script], name: str = "v1") -> None:
        self.scripts = list(scripts)
        self.name = name
        self.rows = [(s, _grams(q), q) for s in self.scripts for q in [*s.questions, s.scenario]]
        self.calls = 0

    def search(self, text: str, k: int = 5) -> list[Hit]:
        self.calls += 1
        q = _grams(text)
        best: dict[str, tuple[float, str, set[str]]] = {}
        for s, g, question in self.rows:
            if not q or not g:
                continue
            common = q & g
            score = min(1.0, 1.6 * 2 * len(common) / (len(q) + len(g)))
            if score > best.get(s.id, (0.0, "", set()))[0]:
                best[s.id] = (score, question, common)
        by_id = {s.id: s for s in self.scripts}
        hits = [Hit(id=sid, scenario=by_id[sid].scenario, script=by_id[sid].script, score=sc,
                    category=by_id[sid].category, tags=list(by_id[sid].tags), matched=m,
                    matched_terms=sorted(c)[:5]) for sid, (sc, m, c) in best.items()]
        hits.sort(key=lambda h: h.score, reverse=True)
        return hits[:k]


class FakeClassifier:
    """Taboo when the agent says 滚 or 闭嘴; risk when the customer says 气死."""

    name = "fake"

    def predict_turns(self, texts: Sequence[str], roles: Sequence[str]) -> list[dict[str, float]]:
        out = []
        for text, role in zip(texts, roles, strict=True):
            if role == "agent":
                out.append({"taboo": 0.95 if ("滚" in text or "闭嘴" in text) else 0.02, "empathy": 0.5})
            else:
                out.append({"risk": 0.9 if "气死" in text else 0.05})
        return out

    def predict_calls(self, transcripts: Sequence[object]) -> list[CallScores]:
        return [CallScores(0.0, 0.5) for _ in transcripts]


class FakeSource:
    """An IndexSource whose version a test bumps to trigger a hot reload."""

    def __init__(self, retriever: FakeRetriever, version: str = "1") -> None:
        self.retriever = retriever
        self._version = version
        self.loads = 0

    def set(self, retriever: FakeRetriever, version: str) -> None:
        self.retriever, self._version = retriever, version

    def version(self) -> str | None:
        return self._version

    def load(self) -> FakeRetriever:
        self.loads += 1
        time.sleep(0.05)  # a load takes time: requests in flight must not notice
        return self.retriever


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn_server(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Start `python -m uvicorn ARGS --port P` (or `kefu serve`) on 127.0.0.1; yield its base URL; stop it."""
    port = free_port()
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
                raise RuntimeError(f"server exited with {proc.returncode}:\n{out}")
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
