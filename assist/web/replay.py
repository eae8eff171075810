"""Training replay uploads: transcripts parsed with kefu.io's readers, problems reported in Chinese by line."""

from __future__ import annotations

import io
import re
from pathlib import PurePath
from typing import Any

from kefu.io import InputError, iter_records
from kefu.io.errors import Record
from kefu.schemas import Problem

MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # the service's body limit for this path (assist/service/app.py)
MAX_CALLS = 2000  # calls kept from one file (a replay file is a handful of training calls)
MAX_ERRORS = 200  # problems listed; the rest are counted
EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".txt", ".parquet")
CALL_KEYS = ("agent_id", "channel", "scenario", "script_id")


class ReplayFileError(Exception):
    """The file as a whole cannot be read; the message is for the user (Chinese)."""


def _turn_label(index: str) -> str:
    return f"第 {int(index) + 1} 句"


_FIELD = {"role": "角色（role）", "text": "文本（text）", "start": "开始时间（start）", "end": "结束时间（end）"}

# (path regex, message regex, Chinese template). Groups of both are available to the template by name.
_RULES: list[tuple[str, str, str]] = [
    (r"^$", r"^invalid JSON: (?P<msg>.*) at column (?P<col>\d+)$", "不是有效的 JSON（{msg}，第 {col} 列）"),
    (r"^$", r"^a transcript must be a JSON object, got (?P<got>\w+)$",
     "每行必须是一个 JSON 对象（一通通话），实际是 {got}"),
    (r"^$", r"^has (?P<n>\d+) cells, the header has (?P<m>\d+)$", "有 {n} 列，而表头只有 {m} 列"),
    (r"^$", r"^rows of call (?P<id>.*) are not contiguous: sort the file by call_id$",
     "通话 {id} 的行不连续：请按 call_id 排序后再上传"),
    (r"^call_id$", r"^is required and must not be empty$", "缺少 call_id（必填，不能为空）"),
    (r"^call_id$", r"^must be a string, got (?P<got>\w+)$", "call_id 必须是字符串，实际是 {got}"),
    (r"^turns$", r"^is required$", "缺少 turns（对话轮次列表）"),
    (r"^turns$", r"^must be a list of turns, got (?P<got>\w+)$", "turns 必须是轮次列表，实际是 {got}"),
    (r"^turns$", r"^is empty: a call needs at least one turn$", "turns 为空：一通通话至少要有一句"),
    (r"^turns\[(?P<i>\d+)\]$", r"^must be an object with role and text, got (?P<got>\w+)$",
     "{turn}必须是含 role 和 text 的对象，实际是 {got}"),
    (r"^turns\[(?P<i>\d+)\]$", r"^end (?P<e>\S+) is before start (?P<s>\S+)$", "{turn}的结束时间 {e} 早于开始时间 {s}"),
    (r"^turns\[(?P<i>\d+)\]\.(?P<f>\w+)$", r"^is required$", "{turn}缺少{field}"),
    (r"^turns\[(?P<i>\d+)\]\.role$", r"^must be agent or customer .*, got (?P<got>.*)$",
     "{turn}的角色必须是 agent/customer（或 坐席/客服/客户/用户），实际是 {got}"),
    (r"^turns\[(?P<i>\d+)\]\.(?P<f>\w+)$", r"^must be a string, got (?P<got>\w+)$",
     "{turn}的{field}必须是文字，实际是 {got}"),
    (r"^turns\[(?P<i>\d+)\]\.(?P<f>\w+)$", r"^must be a number of seconds, got (?P<got>.*)$",
     "{turn}的{field}必须是秒数，实际是 {got}"),
    (r"^turns\[(?P<i>\d+)\]\.(?P<f>\w+)$", r"^must be a finite number >= 0, got (?P<got>.*)$",
     "{turn}的{field}必须是不小于 0 的数，实际是 {got}"),
    (r"^line \d+$", r"^expected '坐席：…' or '客户：…', got (?P<got>.*)$",
     "应为“坐席：…”或“客户：…”格式，实际是 {got}"),
    (r"^line \d+$", r"^bad time range (?P<got>.*)$", "时间范围 {got} 无法识别"),
]
_JSON_MESSAGES = {
    "Expecting value": "缺少值", "Extra data": "一行里有多余内容（一行只能放一通通话）",
    "Expecting property name enclosed in double quotes": "字段名必须用英文双引号括起来",
    "Expecting ',' delimiter": "缺少英文逗号", "Expecting ':' delimiter": "缺少英文冒号",
    "Unterminated string starting at": "字符串没有结束引号", "Invalid control character at": "含有非法控制字符",
    "Invalid \\escape": "含有无效的转义符",
}
_COMPILED = [(re.compile(p), re.compile(m), t) for p, m, t in _RULES]
_LINE_PATH = re.compile(r"^(?:line|row) (?P<line>\d+)(?: \((?P<inner>.*)\))?$")


def problem_zh(problem: Problem) -> tuple[int | None, str]:
    """(the problem's own line when it names one, a Chinese message); unknown messages are kept as they are."""
    path, line = problem.path, None
    m = _LINE_PATH.match(path)
    if m:  # per-turn inputs (CSV rows, text lines) point at the turn's own line
        line = int(m.group("line"))
        path = m.group("inner") or path
    for path_re, msg_re, template in _COMPILED:
        pm, mm = path_re.match(path), msg_re.match(problem.message)
        if pm and mm:
            groups = {**pm.groupdict(), **mm.groupdict()}
            if groups.get("i") is not None:
                groups["turn"] = _turn_label(groups["i"])
            if groups.get("msg") is not None:
                groups["msg"] = _JSON_MESSAGES.get(groups["msg"], groups["msg"])
            if groups.get("f") is not None:
                groups["field"] = _FIELD.get(groups["f"], groups["f"])
            return line, template.format(**groups)
    return line, f"{path}: {problem.message}" if path and not m else problem.message


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
