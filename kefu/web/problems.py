"""Chinese for the transcript readers' problems (kefu.io), shared by every console page that reads uploads."""

from __future__ import annotations

import re

from kefu.schemas import Problem


def _turn_label(index: str) -> str:
    return f"第 {int(index) + 1} 句"


_FIELD = {"role": "角色（role）", "text": "文本（text）", "start": "开始时间（start）", "end": "结束时间（end）"}

# (path regex, message regex, Chinese template). Groups of both are available to the template by name.
_RULES: list[tuple[str, str, str]] = [
    (r"^$", r"^invalid JSON: (?P<msg>.*) at column (?P<col>\d+)$",
     "不是有效的 JSON（{msg}，第 {col} 列；行可能被截断，或缺少括号、引号、逗号）"),
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


# A reader's problem path, as `Problem.__str__` writes it before ": message".
_PATH = re.compile(r"^(?P<path>call_id|turns(?:\[\d+\](?:\.\w+)?)?|(?:line|row) \d+(?: \([^()]*\))?): (?P<msg>.*)$",
                   re.S)


def error_text_zh(error: str) -> str:
    """Chinese for a record's error text (`Record.describe` style: "path: message; path: message")."""
    out = []
    for part in error.split("; "):
        m = _PATH.match(part)
        problem = Problem(m.group("msg"), m.group("path")) if m else Problem(part)
        out.append(problem_zh(problem)[1])
    return "；".join(out)
