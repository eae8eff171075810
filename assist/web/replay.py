"""Training replay uploads: transcripts parsed with kefu.io's readers, problems reported in Chinese by line."""

from __future__ import annotations

import io
import re
from pathlib import PurePath
from typing import Any

from kefu.io import InputError, iter_records
from kefu.io.errors import Record
from kefu.web.problems import problem_zh

MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # the service's body limit for this path (assist/service/app.py)
MAX_CALLS = 2000  # calls kept from one file (a replay file is a handful of training calls)
MAX_ERRORS = 200  # problems listed; the rest are counted
EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt", ".parquet")
CALL_KEYS = ("agent_id", "channel", "scenario", "script_id")


class ReplayFileError(Exception):
    """The file as a whole cannot be read; the message is for the user (Chinese)."""


def record_errors(record: Record) -> list[dict[str, Any]]:
    """One entry per error of a malformed record: line, call id and a Chinese message."""
    out = []
    for problem in record.errors:
        own, message = problem_zh(problem)
        line = own or record.line
        who = f"（通话 {record.call_id}）" if record.call_id else ""
        out.append({"line": line, "call_id": record.call_id, "message": message,
                    "text": f"第 {line} 行{who}：{message}"})
    return out


def _input_error_zh(exc: InputError, name: str) -> str:
    text = str(exc)
    m = re.search(r":(\d+): cannot decode the file as (\S+)", text)
    if m:
        return f"第 {m.group(1)} 行：无法按 {m.group(2)} 解码，请把文件另存为 UTF-8（或 GB18030）编码后再上传"
    m = re.search(r":1: the header must name the columns call_id, role and text \(missing (.*); found (.*)\)", text)
    if m:
        return f"第 1 行：CSV 表头必须包含 call_id、role、text 列（缺少 {m.group(1)}；现有列：{m.group(2)}）"
    if "neither UTF-8 nor GB18030" in text:
        return "文件既不是 UTF-8 也不是 GB18030 编码的文本，请转换编码后再上传"
    if "not a readable Parquet file" in text:
        return "不是可读取的 Parquet 文件"
    if "a Parquet file needs" in text:
        return "Parquet 文件需要 turns 列（每行一通）或 call_id、role、text 列（每行一句）"
    return f"无法读取文件 {name}：{text}"


def parse_upload(data: bytes, filename: str) -> dict[str, Any]:
    """Calls (with their turns) and line-numbered problems of an uploaded transcript file.

    Raises ReplayFileError when the file as a whole cannot be read (format, encoding, CSV header).
    """
    name = PurePath(filename or "").name or "上传文件"
    suffix = PurePath(name).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ReplayFileError(f"无法识别文件格式“{suffix or '无扩展名'}”：请上传 .jsonl（每行一通通话）、"
                              ".csv / .tsv（每行一句，含 call_id、role、text 列）、.txt 或 .parquet 文件")
    if not data.strip():
        raise ReplayFileError(f"{name} 是空文件")
    calls: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    n_bad = n_records = n_more = n_errors = 0
    try:
        for record in iter_records(name, stream=io.BytesIO(data)):
            n_records += 1
            if not record.ok:
                n_bad += 1
                found = record_errors(record)
                n_errors += len(found)
                errors.extend(found[: max(MAX_ERRORS - len(errors), 0)])
                continue
            if len(calls) >= MAX_CALLS:
                n_more += 1
                continue
            t = record.transcript
            extra = t.extra
            labels = extra.get("labels") if isinstance(extra.get("labels"), dict) else {}
            call = {"call_id": t.call_id, "line": record.line, "n_turns": len(t.turns),
                    "turns": [{"role": turn.role, "text": turn.text, "start": turn.start, "end": turn.end}
                              for turn in t.turns]}
            for key in CALL_KEYS:
                value = extra.get(key, labels.get(key))
                if isinstance(value, (str, int, float)) and str(value).strip():
                    call[key] = str(value)
            calls.append(call)
    except InputError as exc:
        raise ReplayFileError(_input_error_zh(exc, name)) from None
    if n_records == 0:
        raise ReplayFileError(f"{name} 里没有通话记录")
    return {"filename": name, "calls": calls, "errors": errors, "n_records": n_records, "n_bad": n_bad,
            "n_more": n_more, "errors_left_out": n_errors - len(errors)}
