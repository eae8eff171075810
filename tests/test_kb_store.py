"""The SQLite script store: versions, statuses, audit, transactions, crashes and concurrent readers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from knowledge_base.schema import Script
from knowledge_base.store import StoreError, open_store
from knowledge_base.store.sqlite import SqliteStore
from tests.conftest import REPO


def make(sid: str = "K001", script: str = "您好，请您先查看总开关是否跳闸。", **kw) -> Script:
    return Script(
        id=sid,
        scenario="居民整户停电报修",
        questions=["家里停电了怎么办", "我家没电了"],
        script=script,
        category="故障报修",
        **kw,
    )


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KEFU_USER", "王培训师")
    s = open_store(tmp_path / "kb")
    yield s
    s.close()


def test_every_change_is_a_version_and_same_content_is_not(store: SqliteStore) -> None:
    assert store.kb_version() == 0
    created = store.put(make(status="draft"))
    assert created is not None and created.action == "create" and created.new_version == 1
    assert store.put(make(status="draft")) is None  # nothing changed: no version, no kb bump
    assert store.kb_version() == 1
    edited = store.put(make(script="您好，请您提供户号。", status="draft"), author="李班长", note="加户号")
    assert edited is not None and edited.action == "edit" and edited.new_version == 2
    approved = store.set_status("K001", "approved")
    assert approved is not None and approved.action == "approve" and approved.old_status == "draft"
    assert store.set_status("K001", "approved") is None

    current = store.get("K001")
    assert current is not None and current.version == 3 and current.status == "approved"
    history = store.history("K001")
    assert [(v.version, v.action, v.status, v.author) for v in history] == [
        (1, "create", "draft", "王培训师"),
        (2, "edit", "draft", "李班长"),
        (3, "approve", "approved", "王培训师"),
    ]
    assert history[0].content["script"] == "您好，请您先查看总开关是否跳闸。"  # old content kept in full
    assert history[1].note == "加户号"
    assert store.kb_version() == 3
    info = store.info("K001")
    assert info is not None and info.created_by == "王培训师" and info.updated_at >= info.created_at


def test_audit_log_names_actor_action_and_details(store: SqliteStore) -> None:
    store.put(make(), author="张三")
    store.set_status("K001", "retired", author="李四", note="场景已合并")
    store.log("import", {"source": "kb.jsonl", "created": 1})
    entries = store.audit()
    assert [(e.action, e.actor, e.script_id) for e in entries] == [
        ("import", "王培训师", None),
        ("retire", "李四", "K001"),
        ("create", "张三", "K001"),
    ]
    assert entries[1].details == {"status": "retired", "from_status": "approved", "note": "场景已合并"}
    assert [e.action for e in store.audit("K001", limit=1)] == ["retire"]


def test_one_kb_version_per_transaction_and_rollback_on_error(store: SqliteStore) -> None:
    with store.transaction(author="批量导入"):
        store.put(make("K001"))
        store.put(make("K002"))
    assert store.kb_version() == 1
    assert {v.kb_version for sid in ("K001", "K002") for v in store.history(sid)} == {1}

    with pytest.raises(RuntimeError), store.transaction():
        store.put(make("K003"))
        store.put(make("K001", script="改了一半"))
        raise RuntimeError("crash half way")
    assert store.get("K003") is None
    assert store.get("K001").script == "您好，请您先查看总开关是否跳闸。"  # type: ignore[union-attr]
    assert store.kb_version() == 1
    assert len(store.audit()) == 2


def test_list_filters_counts_and_meta(store: SqliteStore) -> None:
    store.put(make("K001", tags=["敏感场景"]))
    store.put(make("K002", status="draft"))
    store.put(make("K003", status="retired"))
    assert [s.id for s in store.list(status="approved")] == ["K001"]
    assert [s.id for s in store.list(status=("draft", "approved"))] == ["K001", "K002"]
    assert [s.id for s in store.list(tag="敏感场景")] == ["K001"]
    assert store.counts() == {"draft": 1, "approved": 1, "retired": 1}
    store.set_meta("index_kb_version", "1")
    assert store.get_meta("index_kb_version") == "1" and store.kb_version() == 3  # meta is not a change
    with pytest.raises(StoreError, match="status must be one of"):
        store.list(status="live")
    with pytest.raises(StoreError, match="no script"):
        store.set_status("K999", "approved")


def test_missing_store_and_unknown_backend_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no knowledge base"):
        open_store(tmp_path / "nowhere", create=False)
    with pytest.raises(StoreError, match="unknown store backend"):
        open_store(tmp_path, backend="mongodb")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "kb.sqlite").write_text("not a database", encoding="utf-8")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(tmp_path / "bad")


_CRASH = """
import os, sys
from knowledge_base.schema import Script
from knowledge_base.store import open_store
store = open_store(sys.argv[1])
with store.transaction():
    for i in range(50):
        store.put(Script(id=f"N{i:03d}", scenario="新场景", questions=["问题"], script="话术"))
    store.put(Script(id="K001", scenario="改", questions=["改"], script="改"))
    os._exit(9)  # killed before COMMIT
"""


def test_a_crash_mid_import_leaves_the_database_unchanged(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    with open_store(kb) as s:
        s.put(make())
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(kb)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    with open_store(kb) as s:
        assert s.ids() == {"K001"}
        assert s.get("K001").script == make().script  # type: ignore[union-attr]
        assert s.kb_version() == 1 and len(s.history("K001")) == 1
    conn = sqlite3.connect(kb / "kb.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_readers_see_the_last_commit_while_a_writer_works(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    writer = open_store(kb)
    writer.put(make("K001"))
    reader = open_store(kb)
    seen: list[set[str]] = []
    took: list[float] = []
    with writer.transaction():
        writer.put(make("K002"))
        writer.put(make("K001", script="新版本"))

        def read() -> None:
            start = time.perf_counter()
            seen.append({s.id for s in reader.list()})
            took.append(time.perf_counter() - start)

        thread = threading.Thread(target=read)
        thread.start()
        thread.join(timeout=10)
    assert seen == [{"K001"}]  # the uncommitted import is invisible, and the read did not wait for it
    assert took[0] < 5
    assert reader.get("K001").script == "新版本"  # type: ignore[union-attr]
    assert {s.id for s in reader.list()} == {"K001", "K002"}
    writer.close()
    reader.close()
