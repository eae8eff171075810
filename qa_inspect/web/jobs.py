"""Background scoring jobs of the QA pages: one folder per upload, run in a child process, status on disk.

A job folder under the jobs directory holds

- ``input.<ext>``: the uploaded transcripts as they came;
- ``job.json``: what to do (original file name, format, scorecard, classifier, review store, who);
- ``status.json``: where it stands (state, calls done / total, errors and their lines), rewritten
  atomically by the runner about three times a second (its ``updated_at`` is a heartbeat);
- ``<job id>.jsonl.partial`` while scoring (whole lines only: a kill leaves at most a cut tail,
  which resuming removes), then ``<job id>.jsonl``: the scored output after the sampling pass,
  one line per input call in input order (an ``error`` line for each call that cannot be scored);
- ``log.txt``: the runner's log.

The runner is ``python -m qa_inspect.web.jobs JOB_DIR``, started by the console in its own
session at a lower priority, so a big upload never slows live agent assist down. Jobs run one at
a time (a lock file in the jobs directory); the others wait as ``queued``. A job whose runner died
(server restart, kill, Ctrl-C) is reported as ``interrupted`` — never as done — and can be resumed
where it stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO, Any

from kefu.web.problems import error_text_zh

log = logging.getLogger(__name__)

STATES = ("queued", "running", "sampling", "loading", "done", "failed", "interrupted", "cancelled")
ACTIVE = ("queued", "running", "sampling", "loading")
STATE_NAMES = {
    "queued": "排队中", "running": "评分中", "sampling": "抽样中", "loading": "写入复核库", "done": "已完成",
    "failed": "失败", "interrupted": "已中断", "cancelled": "已取消",
}  # fmt: skip
# Upload extensions and the reader format they mean.
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
           ".parquet": "parquet", ".pq": "parquet", ".txt": "text"}  # fmt: skip
STALE_S = 30.0  # a runner that has not written its status for this long is gone
HEARTBEAT_S = 0.3
MAX_ERRORS_LISTED = 500
CHUNK_CALLS = 16  # small chunks: the progress bar moves smoothly
# Seconds to pause after each chunk: for tests and demos of the progress bar (and of interrupting a job).
DELAY_ENV = "KEFU_QA_JOB_DELAY_S"
_JOB_ID = re.compile(r"^J\d{8}-\d{6}-[0-9a-f]{6}$")
_children: dict[int, subprocess.Popen[bytes]] = {}


class JobError(Exception):
    """A job cannot be created or acted on; the message (Chinese) is shown to the user."""


class Interrupted(BaseException):
    """The runner got SIGTERM (cancel) or SIGINT (Ctrl-C)."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


def job_dir(jobs_dir: Path, job_id: str) -> Path:
    if not valid_job_id(job_id):
        raise JobError(f"没有编号为 {job_id!r} 的评分任务")
    path = jobs_dir / job_id
    if not (path / "job.json").is_file():
        raise JobError(f"没有编号为 {job_id} 的评分任务")
    return path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically: a reader sees the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def output_path(path: Path) -> Path:
    return path / f"{path.name}.jsonl"


def partial_path(path: Path) -> Path:
    return path / f"{path.name}.jsonl.partial"


# ---------------------------------------------------------------- creating, starting, reading


def create_job(
    jobs_dir: Path,
    stream: IO[bytes],
    filename: str,
    *,
    review_db: Path,
    created_by: str,
    scorecard: str | None = None,
    scorecard_label: str = "",
    model_dir: Path | None = None,
    max_bytes: int | None = None,
) -> str:
    """Store an upload as a new job folder (not started yet); returns the job id."""
    name = Path(filename or "").name
    ext = Path(name).suffix.lower()
    if not name:
        raise JobError("请选择要上传的通话文件")
    if ext not in FORMATS:
        raise JobError(f"不支持的文件类型 {ext or '（无扩展名）'}：请上传 JSONL（.jsonl）、CSV（.csv/.tsv）、"
                       "Parquet（.parquet）或文本（.txt）转写文件")
    jobs_dir.mkdir(parents=True, exist_ok=True)
    job_id = dt.datetime.now().strftime("J%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    path = jobs_dir / job_id
    path.mkdir()
    target = path / f"input{ext}"
    size = 0
    try:
        with open(target, "wb") as out:
            while block := stream.read(1 << 20):
                size += len(block)
                if max_bytes is not None and size > max_bytes:
                    raise JobError(f"文件太大：最多 {max_bytes // (1024 * 1024)} MB，请拆分后分批上传")
                out.write(block)
        if size == 0:
            raise JobError("上传的文件是空的")
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    spec = {
        "id": job_id, "filename": name, "input": target.name, "format": FORMATS[ext], "bytes": size,
        "scorecard": scorecard, "scorecard_label": scorecard_label,
        "model_dir": str(model_dir) if model_dir else None, "review_db": str(review_db),
        "created_by": created_by, "created_at": now_iso(),
    }  # fmt: skip
    _write_json(path / "job.json", spec)
    _write_json(path / "status.json", {"state": "queued", "total": None, "done": 0, "errors": 0, "error_lines": [],
                                       "message": "等待开始", "updated_at": time.time(), "pid": None})
    return job_id


def start(path: Path) -> int:
    """Start the runner of a job in its own session at a lower priority; returns its pid."""
    status = _read_json(path / "status.json")
    status.update({"state": "queued", "message": "等待开始", "updated_at": time.time(), "pid": None,
                   "finished_at": None})
    _write_json(path / "status.json", status)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(path / "log.txt", "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa_inspect.web.jobs", str(path)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    _children[proc.pid] = proc
    threading.Thread(target=_reap, args=(proc,), daemon=True, name=f"qa-job-{path.name}").start()
    return proc.pid


def _reap(proc: subprocess.Popen[bytes]) -> None:
    proc.wait()  # no zombie: a dead runner must look dead
    _children.pop(proc.pid, None)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(path: Path) -> dict[str, Any]:
    """The job's spec and status; an active job whose runner is gone is marked interrupted (and saved so)."""
    spec = _read_json(path / "job.json")
    status = _read_json(path / "status.json")
    state = status.get("state")
    if state in ACTIVE:
        beat = status.get("updated_at") or 0
        pid = status.get("pid")
        gone = (pid is not None and not _alive(pid)) or time.time() - float(beat) > STALE_S
        if gone:
            status = _read_json(path / "status.json")  # a runner that just ended has written its last state
            if status.get("state") in ACTIVE:
                status.update({"state": "interrupted", "message": "评分进程已停止（服务重启或进程被中止），任务未完成；"
                               "可点击“继续”从中断处接着评分"})
                with contextlib.suppress(OSError):
                    _write_json(path / "status.json", status)
    out = {**spec, **status}
    out["state"] = status.get("state") or "failed"
    out["state_name"] = STATE_NAMES.get(out["state"], out["state"])
    out["active"] = out["state"] in ACTIVE
    out["finished"] = out["state"] == "done"
    out["has_output"] = output_path(path).is_file() and out["state"] == "done"
    total, done = out.get("total"), out.get("done") or 0
    out["percent"] = 100.0 if out["finished"] else (round(100.0 * done / total, 1) if total else 0.0)
    return out


def list_jobs(jobs_dir: Path, limit: int = 50) -> list[dict[str, Any]]:
    if not jobs_dir.is_dir():
        return []
    ids = sorted((p.name for p in jobs_dir.iterdir() if valid_job_id(p.name) and (p / "job.json").is_file()),
                 reverse=True)
    return [read_status(jobs_dir / i) for i in ids[:limit]]


def cancel(path: Path) -> dict[str, Any]:
    status = read_status(path)
    if not status["active"]:
        raise JobError(f"任务当前为“{status['state_name']}”，无需取消")
    pid = status.get("pid")
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    else:
        raw = _read_json(path / "status.json")
        raw.update({"state": "cancelled", "message": "已取消", "finished_at": now_iso()})
        _write_json(path / "status.json", raw)
    return read_status(path)


def resume(path: Path) -> dict[str, Any]:
    status = read_status(path)
    if status["active"]:
        raise JobError("任务正在进行中")
    if status["state"] == "done":
        raise JobError("任务已完成，无需继续")
    start(path)
    return read_status(path)


# ---------------------------------------------------------------- the runner (child process)


class _Status:
    """The runner's view of status.json, saved at most every HEARTBEAT_S seconds (or when forced)."""

    def __init__(self, path: Path, display_input: tuple[str, str]) -> None:
        self.path = path / "status.json"
        self.data = _read_json(self.path)
        self.data.update({"pid": os.getpid(), "started_at": self.data.get("started_at") or now_iso()})
        self.display = display_input  # (server path of the input, the name the user knows)
        self._saved = 0.0

    def clean(self, text: str) -> str:
        return text.replace(self.display[0], self.display[1])

    def save(self, force: bool = False, **changes: Any) -> None:
        self.data.update(changes)
        now = time.time()
        if force or now - self._saved >= HEARTBEAT_S:
            self.data["updated_at"] = now
            _write_json(self.path, self.data)
            self._saved = now


def _where(source: Any) -> tuple[int | None, str]:
    """(line, Chinese location) from an error line's source "path:12" or "path:row 3"."""
    loc = str(source or "").rsplit(":", 1)[-1].strip()
    if loc.isdigit():
        return int(loc), f"第 {loc} 行"
    if loc.startswith("row ") and loc[4:].isdigit():
        return int(loc[4:]), f"第 {loc[4:]} 行（Parquet）"
    return None, "位置未知"


def _count_calls(path: Path, fmt: str) -> int:
    from kefu.io import iter_records

    if fmt == "jsonl":
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    return sum(1 for _ in iter_records(path, fmt=fmt))


def _chunks(path: Path, fmt: str, skip: int) -> Iterator[Any]:
    from kefu.io import iter_records
    from qa_inspect.engine import chunked
    from qa_inspect.engine.base import raw_chunks

    if fmt == "jsonl":
        return raw_chunks(path, CHUNK_CALLS, None, skip)
    records = iter(iter_records(path, fmt=fmt))
    if skip:
        for _ in islice(records, skip):
            pass
    return chunked(records, CHUNK_CALLS)


def _slowly(chunks: Iterator[Any], delay: float) -> Iterator[Any]:
    for chunk in chunks:
        yield chunk
        time.sleep(delay)


def _on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted("cancelled" if signum == signal.SIGTERM else "interrupted")


def _lock(jobs_root: Path, status: _Status) -> IO[str]:
    """Wait (as queued, with a heartbeat) until no other job runs; the lock goes with the process."""
    fh = open(jobs_root / ".runner.lock", "a")  # noqa: SIM115 - held for the life of the runner
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            status.save(state="queued", message="等待其他评分任务完成")
            time.sleep(0.5)


def run(path: Path) -> int:
    """Run (or resume) one job; returns the process exit code."""
    from kefu.io import KefuError, repair_partial_tail
    from qa_inspect.engine import LineWriter, LocalEngine, ScoreJob
    from qa_inspect.review.store import ReviewStore
    from qa_inspect.sampling import SamplingPolicy, sample_file

    spec = _read_json(path / "job.json")
    source = path / spec["input"]
    status = _Status(path, (str(source), spec.get("filename") or source.name))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    status.save(force=True, state="queued", message="等待开始", finished_at=None)
    out, partial = output_path(path), partial_path(path)
    try:
        lock = _lock(path.parent, status)
        try:
            if not out.exists() or partial.exists():
                status.save(force=True, state="running", message="正在统计通话数")
                total = _count_calls(source, spec["format"])
                done = errors = 0
                error_lines: list[dict[str, Any]] = []
                if partial.exists():  # resume: keep the whole lines scored before the interruption
                    repair_partial_tail(partial)
                    with open(partial, encoding="utf-8") as fh:
                        for line in fh:
                            if not line.strip():
                                continue
                            done += 1
                            obj = json.loads(line)
                            if "error" in obj:
                                errors += 1
                                if len(error_lines) < MAX_ERRORS_LISTED:
                                    error_lines.append(_error_entry(obj, status))
                status.save(force=True, state="running", total=total, done=done, errors=errors,
                            error_lines=error_lines,
                            message="正在评分" + (f"（从第 {done + 1} 通继续）" if done else ""))
                job = ScoreJob(scorecard=spec.get("scorecard"), model_dir=spec.get("model_dir"),
                               chunk_size=CHUNK_CALLS)
                engine = LocalEngine(job, 1)
                delay = float(os.environ.get(DELAY_ENV) or 0)
                chunks = _chunks(source, spec["format"], done)
                if delay > 0:
                    chunks = _slowly(chunks, delay)
                with LineWriter(partial, mode="append", flush_every=1) as writer:
                    for line in engine.run(chunks):
                        writer.write_line(line)
                        done += 1
                        if '"error":' in line[:400]:
                            obj = json.loads(line)
                            if "error" in obj:
                                errors += 1
                                if len(error_lines) < MAX_ERRORS_LISTED:
                                    error_lines.append(_error_entry(obj, status))
                        status.save(done=done, errors=errors, error_lines=error_lines)
                status.save(force=True, state="sampling", done=done, errors=errors, error_lines=error_lines,
                            total=max(total, done), message="正在抽样（决定哪些通话需要人工复核）")
                summary = sample_file(partial, SamplingPolicy(), out)
                partial.unlink()
                status.save(force=True, picked=summary.picked)
            status.save(force=True, state="loading", message="正在写入复核库")
            with ReviewStore(spec["review_db"]) as store:
                loaded = store.load(out, source, all_calls=True, actor=spec.get("created_by") or "console")
            status.save(force=True, state="done", message="评分完成", finished_at=now_iso(),
                        loaded={"new": loaded.calls_new, "updated": loaded.calls_updated,
                                "transcripts": loaded.transcripts})
            return 0
        finally:
            lock.close()
    except Interrupted as exc:
        message = ("已取消（已评分的部分保留，可点击“继续”接着评分）" if exc.state == "cancelled"
                   else "评分被中断，可点击“继续”从中断处接着评分")
        status.save(force=True, state=exc.state, message=message, finished_at=now_iso())
        return 130
    except KefuError as exc:
        status.save(force=True, state="failed", message="文件无法处理：" + status.clean(str(exc)),
                    finished_at=now_iso())
        return 2
    except Exception as exc:
        log.exception("job %s failed", path.name)
        status.save(force=True, state="failed", message=f"评分失败：{type(exc).__name__}: {status.clean(str(exc))}",
                    finished_at=now_iso())
        return 1


def _error_entry(obj: dict[str, Any], status: _Status) -> dict[str, Any]:
    line, where = _where(obj.get("source"))
    return {"line": line, "where": where, "call_id": obj.get("call_id"),
            "error": error_text_zh(status.clean(str(obj.get("error"))))}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m qa_inspect.web.jobs JOB_DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(5)  # live assist in the server comes first
    return run(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
