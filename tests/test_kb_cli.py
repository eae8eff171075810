"""`kefu kb` curation commands, and the index kept in step with the store (against a fake index)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import openpyxl
import pytest

import knowledge_base.kb as kb_module
from knowledge_base.gaps import GAP_LOG, cluster_gaps, log_gap, read_gap_texts
from knowledge_base.io import read_scripts
from knowledge_base.kb import KnowledgeBase
from knowledge_base.lint import lint_scripts
from knowledge_base.schema import Hit, Script
from tests.conftest import REPO
from tests.test_kb_io import scripts, write_jsonl

BUNDLED = REPO / "knowledge_base" / "data" / "scripts.jsonl"


class FakeIndex:
    """The IndexManager contract, kept in a JSON file so that it survives between CLI runs."""

    calls: ClassVar[list[tuple[str, Any, int]]] = []
    fail_next: ClassVar[str | None] = None

    def __init__(self, kb_dir: Path, config: dict | None = None) -> None:
        self.path = Path(kb_dir) / "index" / "fake.json"

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text(encoding="utf-8"))

    def _save(self, scripts: dict[str, dict], kb_version: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"kb_version": kb_version, "scripts": scripts}, ensure_ascii=False))

    def _maybe_fail(self, op: str) -> None:
        if FakeIndex.fail_next == op:
            FakeIndex.fail_next = None
            raise OSError(f"disk full during {op}")

    def exists(self) -> bool:
        return self.path.exists()

    def rebuild(self, scripts: list[Script], kb_version: int) -> None:
        self._maybe_fail("rebuild")
        FakeIndex.calls.append(("rebuild", sorted(s.id for s in scripts), kb_version))
        self._save({s.id: {**s.content(), "status": s.status} for s in scripts}, kb_version)

    def upsert(self, scripts: list[Script], kb_version: int) -> None:
        self._maybe_fail("upsert")
        FakeIndex.calls.append(("upsert", sorted(s.id for s in scripts), kb_version))
        state = self._load()["scripts"]
        state.update({s.id: {**s.content(), "status": s.status} for s in scripts})
        self._save(state, kb_version)

    def remove(self, ids: list[str], kb_version: int) -> None:
        self._maybe_fail("remove")
        FakeIndex.calls.append(("remove", sorted(ids), kb_version))
        state = self._load()["scripts"]
        for i in ids:
            state.pop(i, None)
        self._save(state, kb_version)

    def info(self) -> dict[str, Any]:
        data = self._load()
        return {"kb_version": data["kb_version"], "scripts": len(data["scripts"])}

    def indexed(self) -> dict[str, dict]:
        return self._load()["scripts"] if self.exists() else {}

    def retriever(self) -> FakeIndex:
        return self

    def search(self, text: str, k: int = 5) -> list[Hit]:
        hits = [
            Hit(i, s["scenario"], s["script"], 1.0)
            for i, s in self.indexed().items()
            if any(text in q or q in text for q in s["questions"])
        ]
        return hits[:k]


@pytest.fixture()
def fake_index(monkeypatch: pytest.MonkeyPatch) -> type[FakeIndex]:
    FakeIndex.calls = []
    FakeIndex.fail_next = None
    monkeypatch.setattr(kb_module, "load_index_manager", lambda kb_dir, config=None: FakeIndex(kb_dir, config))
    return FakeIndex


@pytest.fixture()
def kb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEFU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KEFU_USER", "培训师甲")
    return tmp_path / "kb"


@pytest.fixture()
def kb_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "scripts.jsonl", scripts())


def indexed(kb_dir: Path) -> dict[str, dict]:
    return FakeIndex(kb_dir).indexed()


def test_every_kb_command_has_help(cli) -> None:
    for command in (
        "import",
        "export",
        "add",
        "edit",
        "approve",
        "retire",
        "show",
        "history",
        "diff",
        "list",
        "lint",
        "gaps",
        "reindex",
        "status",
        "audit",
    ):
        result = cli("kb", command, "--help")
        assert result.code == 0 and "Usage" in result.out, command


def test_import_makes_scripts_searchable_and_reimport_changes_nothing(cli, fake_index, kb_dir, kb_file) -> None:
    result = cli("kb", "import", str(kb_file), "--kb", str(kb_dir))
    assert result.code == 0, result.err
    assert "3 new" in result.out and "index rebuilt" in result.out
    assert fake_index.calls == [("rebuild", ["K001", "K002", "K003"], 1)]
    assert [h.id for h in FakeIndex(kb_dir).search("这个月电费怎么这么高")] == ["K002"]

    again = cli("kb", "import", str(kb_file), "--kb", str(kb_dir), "--json")
    report = json.loads(again.out)
    assert again.code == 0 and report["unchanged"] == 3 and report["kb_version"] == 1
    assert report["index"]["state"] == "fresh"
    assert len(fake_index.calls) == 1  # the index was not touched
    history = cli("kb", "history", "K001", "--kb", str(kb_dir), "--json")
    assert len(history.out.splitlines()) == 1  # no new version


def test_bad_file_writes_nothing_and_lists_every_bad_line(cli, fake_index, kb_dir, kb_file, tmp_path) -> None:
    assert cli("kb", "import", str(kb_file), "--kb", str(kb_dir)).code == 0
    rows = scripts()
    rows[0]["script"] = "改过的话术，但文件里还有错误。"
    bad = write_jsonl(tmp_path / "bad.jsonl", [rows[0], {**rows[1], "questions": []}, "[1, 2]", {"id": "K9"}])
    result = cli("kb", "import", str(bad), "--kb", str(kb_dir))
    assert result.code == 2
    for line in (f"{bad}:2 (script K002): questions", f"{bad}:3: expected a JSON object", f"{bad}:4 (script K9)"):
        assert line in result.err
    assert "nothing was imported" in result.err
    shown = json.loads(cli("kb", "show", "K001", "--kb", str(kb_dir), "--json").out)
    assert shown["script"] == scripts()[0]["script"] and shown["version"] == 1
    assert len(fake_index.calls) == 1


def test_add_edit_approve_retire_keep_the_index_in_step(cli, fake_index, kb_dir, kb_file) -> None:
    kb = str(kb_dir)
    cli("kb", "import", str(kb_file), "--kb", kb)
    added = cli(
        "kb",
        "add",
        "--kb",
        kb,
        "--scenario",
        "充电桩扫码无反应",
        "-q",
        "充电桩扫码没反应",
        "-q",
        "扫码充不上电",
        "--script",
        "您好，请您提供充电桩编号。",
        "--category",
        "新能源",
    )
    assert added.code == 0 and "added K004 v1 (draft)" in added.out
    assert "K004" not in indexed(kb_dir)  # drafts are never suggested

    assert cli("kb", "approve", "K004", "--kb", kb).code == 0
    assert fake_index.calls[-1] == ("upsert", ["K004"], 3)
    assert "K004" in indexed(kb_dir)

    edited = cli(
        "kb", "edit", "K004", "--kb", kb, "--add-question", "扫了码没反应", "--author", "班长乙", "-m", "补充问法"
    )
    assert edited.code == 0 and "v2 → v3 (approved)" in edited.out
    assert "扫了码没反应" in indexed(kb_dir)["K004"]["questions"]

    assert cli("kb", "retire", "K002", "--kb", kb).code == 0
    assert fake_index.calls[-1] == ("remove", ["K002"], 5)
    assert "K002" not in indexed(kb_dir)
    assert sorted(indexed(kb_dir)) == ["K001", "K003", "K004"]

    # Editing a retired script never puts it back into the index.
    assert cli("kb", "edit", "K002", "--kb", kb, "--add-tag", "待合并").code == 0
    assert "K002" not in indexed(kb_dir)
    assert [c[0] for c in fake_index.calls].count("rebuild") == 1


def test_history_diff_show_and_list_show_the_change(cli, fake_index, kb_dir, kb_file) -> None:
    kb = str(kb_dir)
    cli("kb", "import", str(kb_file), "--kb", kb)
    cli(
        "kb",
        "edit",
        "K002",
        "--kb",
        kb,
        "--script",
        "您好，请您提供户号，我帮您核对电量和电价。",
        "--author",
        "质检丙",
        "-m",
        "加电价核对",
    )
    history = cli("kb", "history", "K002", "--kb", kb)
    lines = history.out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("v1 ") and "培训师甲" in lines[0] and "create" in lines[0]
    assert "质检丙" in lines[1] and "changed: script" in lines[1] and "加电价核对" in lines[1]

    diff = cli("kb", "diff", "K002", "--kb", kb).out
    assert "-  您好，我帮您查询近几个月的电量电费，请您提供户号。" in diff
    assert "+  您好，请您提供户号，我帮您核对电量和电价。" in diff

    old = json.loads(cli("kb", "show", "K002", "--version", "1", "--kb", kb, "--json").out)
    assert old["content"]["script"].startswith("您好，我帮您查询")
    listed = [json.loads(line) for line in cli("kb", "list", "--kb", kb, "--json").out.splitlines()]
    assert [(s["id"], s["version"]) for s in listed] == [("K001", 1), ("K002", 2), ("K003", 1)]
    assert cli("kb", "show", "K999", "--kb", kb).code == 2


def test_import_as_drafts_and_status_rules(cli, fake_index, kb_dir, kb_file, tmp_path) -> None:
    kb = str(kb_dir)
    assert cli("kb", "import", str(kb_file), "--kb", kb, "--status", "draft").code == 0
    assert indexed(kb_dir) == {} and fake_index.calls == []
    assert cli("kb", "approve", "K001", "K002", "--kb", kb).code == 0
    assert sorted(indexed(kb_dir)) == ["K001", "K002"]
    # A changed row keeps the script's status; a status column wins.
    rows = scripts()
    rows[0]["questions"].append("又停电了")
    rows[2]["status"] = "retired"
    report = json.loads(cli("kb", "import", str(write_jsonl(tmp_path / "v2.jsonl", rows)), "--kb", kb, "--json").out)
    assert report["updated"] == ["K001"] and report["status_changed"] == ["K003"] and report["unchanged"] == 1
    assert json.loads(cli("kb", "show", "K001", "--kb", kb, "--json").out)["status"] == "approved"
    assert json.loads(cli("kb", "show", "K003", "--kb", kb, "--json").out)["status"] == "retired"
    assert "又停电了" in indexed(kb_dir)["K001"]["questions"]


def test_dry_run_and_retire_missing(cli, fake_index, kb_dir, kb_file, tmp_path) -> None:
    kb = str(kb_dir)
    dry = cli("kb", "import", str(kb_file), "--kb", kb, "--dry-run")
    assert dry.code == 0 and "would import" in dry.out and not kb_dir.exists()
    cli("kb", "import", str(kb_file), "--kb", kb)
    only_two = write_jsonl(tmp_path / "two.jsonl", scripts()[:2])
    report = json.loads(cli("kb", "import", str(only_two), "--kb", kb, "--retire-missing", "--json").out)
    assert report["retired_missing"] == ["K003"]
    assert sorted(indexed(kb_dir)) == ["K001", "K002"]


def test_failed_index_update_keeps_the_store_and_is_repaired(cli, fake_index, kb_dir, kb_file) -> None:
    kb = str(kb_dir)
    cli("kb", "import", str(kb_file), "--kb", kb)
    fake_index.fail_next = "remove"
    result = cli("kb", "retire", "K001", "--kb", kb)
    assert result.code == 2 and "kefu kb reindex" in result.err
    assert json.loads(cli("kb", "show", "K001", "--kb", kb, "--json").out)["status"] == "retired"  # store kept it
    status = json.loads(cli("kb", "status", "--kb", kb, "--json").out)
    assert status["index"] == "stale" and status["kb_version"] == 2 and status["index_kb_version"] == 1

    # The next change sees the index is behind and rebuilds it from the store.
    assert cli("kb", "edit", "K002", "--kb", kb, "--add-tag", "高频").code == 0
    assert fake_index.calls[-1] == ("rebuild", ["K002", "K003"], 3)
    assert sorted(indexed(kb_dir)) == ["K002", "K003"]

    fake_index.fail_next = "upsert"
    assert cli("kb", "edit", "K002", "--kb", kb, "--add-tag", "重点").code == 2
    assert cli("kb", "reindex", "--kb", kb).code == 0
    assert indexed(kb_dir)["K002"]["tags"] == ["高频", "重点"]
    assert json.loads(cli("kb", "status", "--kb", kb, "--json").out)["index"] == "fresh"


def test_facade_api_and_retriever(fake_index, kb_dir, kb_file) -> None:
    with KnowledgeBase.open(kb_dir, create=True) as kb:
        report = kb.import_file(kb_file)
        assert report.created == ["K001", "K002", "K003"] and report.index is not None and report.index.ok
        kb.retire(["K003"], author="组长")
        assert [h.id for h in kb.retriever().search("交了电费怎么还没来电")] == []
        assert [h.id for h in kb.retriever().search("我家整个没电了")] == ["K001"]
        assert [s.id for s in kb.approved()] == ["K001", "K002"]
        with pytest.raises(Exception, match="already exists"):
            kb.add(Script(id="K001", scenario="x", questions=["x"], script="x"))
        with pytest.raises(Exception, match="questions"):
            kb.edit("K001", {"questions": []})
        assert kb.edit("K001", {"tags": ["高频"]}) is None  # same content: no version


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_export_and_reimport_round_trip(cli, fake_index, kb_dir, kb_file, tmp_path, suffix) -> None:
    kb = str(kb_dir)
    cli("kb", "import", str(kb_file), "--kb", kb)
    cli("kb", "retire", "K003", "--kb", kb)
    out = tmp_path / f"export.{suffix}"
    assert cli("kb", "export", str(out), "--kb", kb).code == 0
    if suffix == "xlsx":
        header = [c.value for c in next(openpyxl.load_workbook(out).active.iter_rows(max_row=1))]
        assert header[:8] == ["id", "scenario", "category", "questions", "script", "keywords", "tags", "status"]
    report = json.loads(cli("kb", "import", str(out), "--kb", kb, "--json").out)
    assert report["unchanged"] == 3 and report["kb_version"] == 2


def test_lint_finds_near_duplicates_thin_scripts_and_missing_time_limits(cli, kb_dir, tmp_path) -> None:
    rows = scripts()
    rows[1]["questions"].append("屋里全黑了，邻居家有电！")  # the same as one of K001's, after normalising
    rows[2]["questions"] = ["交了电费怎么还没来电", "家里突然就停电了怎么办"]  # the second is close to K001's
    rows[2]["script"] = "您好，缴费后我们会尽快为您恢复供电。"
    rows[0]["script"] = rows[0]["script"].replace("45分钟", "四十五分钟")
    path = write_jsonl(tmp_path / "lint.jsonl", rows)
    result = cli("kb", "lint", str(path))
    assert result.code == 1
    assert "K001: warning [near-duplicate] question '家里突然停电了怎么办' is close to K003" in result.out
    assert "K001: error [near-duplicate] question '屋里全黑了 邻居家有电' is the same as K002" in result.out
    assert "K003: warning [few-questions]" in result.out
    assert "K003: warning [time-limit-missing]" in result.out and "24小时" in result.out
    assert "K001: warning [time-limit-not-stated]" in result.out and "45分钟" in result.out
    clean = cli("kb", "lint", str(write_jsonl(tmp_path / "ok.jsonl", scripts())))
    assert clean.code == 0, clean.out


def test_bundled_knowledge_base_has_no_near_duplicates() -> None:
    if not BUNDLED.exists():
        pytest.skip("no bundled scripts")
    issues = lint_scripts([r.script for r in read_scripts(BUNDLED)])
    assert [str(i) for i in issues if i.code in ("near-duplicate", "few-questions")] == []


def test_gap_log_is_clustered_into_topics(cli, kb_dir, tmp_path) -> None:
    texts = [
        "充电桩扫码充不上电",
        "充电桩扫码后没反应",
        "扫码充电一直失败",
        "充电桩扫码充不上电",
        "光伏补贴什么时候到账",
        "光伏发电补贴怎么还没到账",
        "分布式光伏补贴到账时间",
        "我要找你们领导",
    ]
    for i, text in enumerate(texts):
        assert log_gap(kb_dir, text, call_id=f"C{i}", best_score=0.2)
    assert not log_gap(kb_dir, "   ")
    with open(kb_dir / GAP_LOG, "a", encoding="utf-8") as fh:
        fh.write('{"text": "半行')  # a line cut by a crash is skipped, not fatal
    assert len(read_gap_texts(kb_dir / GAP_LOG)) == len(texts)

    result = cli("kb", "gaps", "--kb", str(kb_dir), "--json")
    assert result.code == 0, result.err
    clusters = [json.loads(line) for line in result.out.splitlines()]
    assert clusters[0]["count"] == 4 and "扫码" in clusters[0]["terms"]
    assert clusters[0]["call_ids"][:2] == ["C0", "C3"] or "C0" in clusters[0]["call_ids"]
    assert clusters[1]["count"] == 3 and all("光伏" in e for e in clusters[1]["examples"])
    assert clusters[2]["unique"] == 1

    plain = tmp_path / "texts.txt"
    plain.write_text("\n".join(texts), encoding="utf-8")
    out = tmp_path / "clusters.jsonl"
    assert cli("kb", "gaps", str(plain), "--min-count", "2", "-o", str(out)).code == 0
    assert [json.loads(line)["count"] for line in out.read_text(encoding="utf-8").splitlines()] == [4, 3]
    assert cluster_gaps([]) == []


def test_missing_kb_is_a_clear_error(cli, kb_dir) -> None:
    result = cli("kb", "list", "--kb", str(kb_dir))
    assert result.code == 2 and "no knowledge base" in result.err and "kefu kb import" in result.err
    assert cli("kb", "gaps", "--kb", str(kb_dir)).code == 2


def test_end_to_end_with_the_real_index(cli, kb_dir, kb_file) -> None:
    pytest.importorskip("knowledge_base.index.manager", exc_type=ImportError)
    kb = str(kb_dir)
    result = cli("kb", "import", str(kb_file), "--kb", kb)
    assert result.code == 0 and "index rebuilt" in result.out, result.err
    with KnowledgeBase.open(kb_dir) as base:
        assert base.status()["index"] == "fresh"
        assert base.retriever().search("我家整个没电了", k=3)[0].id == "K001"
    found = cli("kb", "search", "我家整个没电了", "--kb", kb, "--json", "--min-score", "0")
    assert found.code == 0 and json.loads(found.out)["hits"][0]["id"] == "K001", found.err
    assert cli("kb", "retire", "K001", "--kb", kb).code == 0
    after = cli("kb", "search", "我家整个没电了", "--kb", kb, "--json", "--min-score", "0")
    assert "K001" not in [h["id"] for h in json.loads(after.out)["hits"]]
    with KnowledgeBase.open(kb_dir) as base:
        assert "K001" not in [h.id for h in base.retriever().search("我家整个没电了", k=3)]
        assert base.status()["index"] == "fresh"


def test_a_change_committed_by_another_writer_is_not_lost_from_the_index(fake_index, kb_dir, kb_file) -> None:
    with KnowledgeBase.open(kb_dir, create=True) as first, KnowledgeBase.open(kb_dir) as second:
        first.import_file(kb_file)
        # Another process committed a change but has not updated the index yet …
        other = first.get("K002")
        other.tags = ["另一进程"]
        assert first.store.put(other) is not None
        # … so this change must not patch the index on top of the missing one: it rebuilds.
        second.edit("K003", {"tags": ["本进程"]})
        assert fake_index.calls[-1] == ("rebuild", ["K001", "K002", "K003"], 3)
        assert indexed(kb_dir)["K002"]["tags"] == ["另一进程"]
        assert first.sync_index().state == "fresh"
