"""The hybrid index: per-script hits, calibrated scores, threshold, incremental updates and atomic rebuilds."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from knowledge_base.index.hybrid import HybridRetriever
from knowledge_base.index.manager import BUILDS, CURRENT, JOURNAL, IndexManager, KbIndexError
from knowledge_base.index.sparse import BM25Index, tokenize
from knowledge_base.schema import Script
from tests.kb_fixtures import QUERIES, copy_scripts, shared_tiny_encoder


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_encoder(tmp_path_factory)


@pytest.fixture(scope="session")
def built_kb(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_path: Path) -> Path:
    kb = tmp_path_factory.mktemp("kb-built")
    IndexManager(kb, {"encoder": str(tiny_encoder_path)}).rebuild(copy_scripts(), kb_version=1)
    return kb


@pytest.fixture()
def kb(tmp_path: Path, built_kb: Path) -> Path:
    """A private copy of the built index that a test may change."""
    shutil.copytree(built_kb, tmp_path / "kb")
    return tmp_path / "kb"


def test_paraphrases_find_their_script_in_top_3(built_kb: Path) -> None:
    r = IndexManager(built_kb).retriever()
    found = 0
    for text, expected in QUERIES:
        hits = r.search(text, k=3, threshold=0.0)
        assert len({h.id for h in hits}) == len(hits)  # one hit per script
        assert all(0.0 <= h.score <= 1.0 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        found += expected in [h.id for h in hits]
    assert found >= 9


def test_hit_carries_evidence(built_kb: Path) -> None:
    hit = IndexManager(built_kb).retriever().search("网上国网怎么绑定户号", k=1, threshold=0.0)[0]
    assert hit.id == "K005" and hit.scenario == "网上国网绑定户号" and hit.script.startswith("您好")
    assert hit.matched  # the question (or scenario / reply) that matched best
    assert "网上国网" in hit.matched_terms and "户号" in "".join(hit.matched_terms)
    assert set(hit.to_dict()) >= {"id", "scenario", "script", "score", "matched", "matched_terms"}


def test_threshold_suppresses_weak_matches(built_kb: Path) -> None:
    r = IndexManager(built_kb).retriever()
    assert r.search("今天天气真不错我们去公园散步吧", k=5) == [] or all(
        h.score >= r.fusion.threshold for h in r.search("今天天气真不错我们去公园散步吧", k=5)
    )
    assert r.search("我家停电了", k=5, threshold=1.0) == []
    assert r.search("   ", k=5) == []
    with pytest.raises(ValueError, match="k must be"):
        r.search("我家停电了", k=0)


def test_info_records_build_metadata(built_kb: Path) -> None:
    info = IndexManager(built_kb).info()
    assert info["kb_version"] == 1 and info["counts"]["scripts"] == 10
    assert info["encoder"]["name"] == "tiny" and info["dense_kind"] == "flat"
    assert info["built_at"] and info["build_id"]
    assert (built_kb / "index" / BUILDS / info["build_id"] / "encoder" / "config.json").exists()


def test_upsert_edit_and_retire_are_visible_and_persisted(kb: Path) -> None:
    m = IndexManager(kb)
    r = m.retriever()
    new = Script(
        "K011",
        "路灯不亮报修",
        ["路灯坏了不亮", "小区门口路灯晚上不亮"],
        "您好，我们会通知路灯维护单位处理。",
        keywords=["路灯"],
    )
    m.upsert([new], kb_version=2)
    assert r.search("路灯不亮了", k=1, threshold=0.0)[0].id == "K011"
    edited = copy_scripts()[7]  # K008: add a question it did not have
    edited.questions.append("家门口的变压器嗡嗡响")
    m.upsert([edited], kb_version=3)
    assert r.search("家门口的变压器嗡嗡响", k=1, threshold=0.0)[0].id == "K008"
    retired = copy_scripts()[6]
    retired.status = "retired"
    m.upsert([retired], kb_version=4)
    m.remove(["K010"], kb_version=5)
    ids = {h.id for h in r.search("我要投诉 充电桩", k=10, threshold=0.0)}
    assert "K007" not in ids and "K010" not in ids
    # A fresh reader (another process) replays the journal and sees the same index.
    fresh = IndexManager(kb)
    assert fresh.info()["kb_version"] == 5 and fresh.info()["updates_since_build"] == 4
    r2 = fresh.retriever()
    assert r2.size == 9 and r2.search("路灯不亮了", k=1, threshold=0.0)[0].id == "K011"
    assert "K007" not in {h.id for h in r2.search("我要投诉你们", k=10, threshold=0.0)}


def test_refresh_picks_up_another_writers_updates(kb: Path) -> None:
    reader = IndexManager(kb)
    r = reader.retriever()
    IndexManager(kb).remove(["K001"], kb_version=2)
    assert "K001" in {h.id for h in r.search("我家停电了", k=10, threshold=0.0)}
    assert reader.refresh() is True
    assert "K001" not in {h.id for h in reader.retriever().search("我家停电了", k=10, threshold=0.0)}
    assert reader.refresh() is False


def test_journal_ignores_an_unfinished_last_line(kb: Path) -> None:
    m = IndexManager(kb)
    m.remove(["K002"], kb_version=2)
    journal = kb / "index" / BUILDS / m.info()["build_id"] / JOURNAL
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write('{"op": "remove", "ids": ["K003"')  # a writer killed mid-line
    r = IndexManager(kb).retriever()
    assert "K002" not in r.scripts and "K003" in r.scripts


def test_rebuild_swaps_atomically_while_readers_keep_working(kb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = IndexManager(kb)
    old_reader = old.retriever()
    old_build = old.info()["build_id"]
    seen_during_build: list[str] = []
    real_save = HybridRetriever.save

    def save_and_peek(self: HybridRetriever, path: Path) -> dict:
        # Mid-build: a new reader still gets the old, complete index.
        peek = IndexManager(kb)
        seen_during_build.append(peek.info()["build_id"])
        assert peek.retriever().search("我家停电了", k=1, threshold=0.0)[0].id == "K001"
        return real_save(self, path)

    monkeypatch.setattr(HybridRetriever, "save", save_and_peek)
    smaller = [s for s in copy_scripts() if s.id != "K001"]
    IndexManager(kb).rebuild(smaller, kb_version=7)
    assert seen_during_build == [old_build]
    # The reader that held the old index keeps answering from it.
    assert old_reader.search("我家停电了", k=1, threshold=0.0)[0].id == "K001"
    new = IndexManager(kb)
    assert new.info()["kb_version"] == 7 and new.info()["build_id"] != old_build
    assert "K001" not in {h.id for h in new.retriever().search("我家停电了", k=10, threshold=0.0)}
    assert (kb / "index" / CURRENT).read_text().strip() == new.info()["build_id"]


def test_failed_rebuild_leaves_the_live_index_untouched(kb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = IndexManager(kb).info()["build_id"]

    def boom(self: HybridRetriever, path: Path) -> dict:
        raise OSError("disk full")

    monkeypatch.setattr(HybridRetriever, "save", boom)
    with pytest.raises(OSError):
        IndexManager(kb).rebuild(copy_scripts()[:3], kb_version=9)
    assert IndexManager(kb).info()["build_id"] == before
    assert not list((kb / "index" / BUILDS).glob(".tmp-*"))


def test_concurrent_searches_during_updates(kb: Path) -> None:
    m = IndexManager(kb)
    r = m.retriever()
    errors: list[BaseException] = []

    def search_loop() -> None:
        try:
            for _ in range(200):
                r.search("电费怎么这么贵", k=3, threshold=0.0)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=search_loop)
    t.start()
    for v in range(2, 12):
        s = copy_scripts()[1]
        s.questions.append(f"电费问题第{v}次")
        m.upsert([s], kb_version=v)
    t.join()
    assert not errors


def test_hnsw_above_threshold_supports_removal(tmp_path: Path, tiny_encoder_path: Path) -> None:
    m = IndexManager(tmp_path / "kb", {"encoder": str(tiny_encoder_path), "dense": {"approx_threshold": 10}})
    m.rebuild(copy_scripts(), kb_version=1)
    assert m.info()["dense_kind"] == "hnsw"
    m.remove(["K005"], kb_version=2)
    r = IndexManager(tmp_path / "kb").retriever()
    assert r.search("网上国网怎么绑户号", k=1, threshold=0.0)[0].id != "K005"


def test_missing_index_and_bad_settings_are_clear_errors(tmp_path: Path) -> None:
    m = IndexManager(tmp_path / "nothing")
    assert not m.exists()
    with pytest.raises(KbIndexError, match="no search index"):
        m.retriever()
    with pytest.raises(KbIndexError, match="unknown index settings"):
        IndexManager(tmp_path, {"colour": "blue"})
    with pytest.raises(KbIndexError, match="dense index kind"):
        IndexManager(tmp_path, {"dense": {"kind": "annoy"}})


def test_untrained_fallback_when_no_encoder_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("knowledge_base.index.manager.default_encoder_path", lambda: None)
    m = IndexManager(tmp_path / "kb")
    m.rebuild(copy_scripts(), kb_version=1)
    assert m.info()["encoder_source"] == "untrained fallback"
    assert m.retriever().search("峰谷电价怎么算", k=1, threshold=0.0)[0].id == "K004"


def test_bm25_incremental_updates_match_a_full_build() -> None:
    texts = [q for s in copy_scripts() for q in s.questions]
    full = BM25Index()
    full.build(list(range(len(texts))), [tokenize(t) for t in texts])
    inc = BM25Index()
    inc.build(list(range(20)), [tokenize(t) for t in texts[:20]])
    inc.avgdl = full.avgdl
    inc.build(list(range(20)), [tokenize(t) for t in texts[:20]])  # same rows again: rebuild is idempotent
    for i in range(20, len(texts)):
        inc.add(i, tokenize(texts[i]))
    inc.add(len(texts), tokenize("多余的一行"))
    inc.remove([len(texts)])
    q = tokenize("电费怎么这么高 停电")
    a, _ = full.scores(q)
    b, _ = inc.scores(q)
    assert np.argmax(a) == np.argmax(b[: len(a)])
    assert np.corrcoef(a, b[: len(a)])[0, 1] > 0.99
    saved = BM25Index.from_state({k: v for k, v in inc.state().items()})
    np.testing.assert_allclose(saved.scores(q)[0][: len(a)], inc.scores(q)[0][: len(a)], rtol=1e-5)


def test_index_files_are_plain_and_described(built_kb: Path) -> None:
    build = built_kb / "index" / BUILDS / IndexManager(built_kb).info()["build_id"]
    config = json.loads((build / "config.json").read_text())
    assert config["fusion"]["features"] and 0 < config["fusion"]["threshold"] < 1
    assert {"dense.faiss", "sparse.npz", "scripts.jsonl", "rows.json", "meta.json"} <= {p.name for p in build.iterdir()}


def test_empty_library_builds_and_finds_nothing(tmp_path: Path, tiny_encoder_path: Path) -> None:
    m = IndexManager(tmp_path / "kb", {"encoder": str(tiny_encoder_path)})
    m.rebuild([], kb_version=1)
    assert m.exists() and m.info()["counts"]["scripts"] == 0
    assert IndexManager(tmp_path / "kb").retriever().search("我家停电了", k=3, threshold=0.0) == []
    m.upsert(copy_scripts()[:1], kb_version=2)
    assert m.retriever().search("我家停电了", k=3, threshold=0.0)[0].id == "K001"


def test_threshold_is_chosen_at_build_unless_configured(
    built_kb: Path, tmp_path: Path, tiny_encoder_path: Path
) -> None:
    calibration = IndexManager(built_kb).info()["calibration"]
    assert calibration["by_threshold"] and 0 < IndexManager(built_kb).retriever().fusion.threshold < 1
    assert IndexManager(built_kb, {"search": {"threshold": 0.9}}).retriever().fusion.threshold == 0.9
    m = IndexManager(tmp_path / "kb", {"encoder": str(tiny_encoder_path), "search": {"threshold": 0.05}})
    m.rebuild(copy_scripts(), kb_version=1)
    assert IndexManager(tmp_path / "kb").retriever().fusion.threshold == 0.05
    with pytest.raises(KbIndexError, match="threshold"):
        IndexManager(tmp_path, {"search": {"threshold": 2}})
