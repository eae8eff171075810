"""Reading and writing scenario scripts as JSON Lines, CSV and Excel (.xlsx)."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kefu.io import CsvWriter, InputError, JsonlWriter, KefuError, atomic_path, read_text
from knowledge_base.schema import REQUIRED_FIELDS, STATUSES, Script

log = logging.getLogger(__name__)

SCRIPT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "xlsx")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".xlsx": "xlsx"}
LIST_FIELDS: tuple[str, ...] = ("questions", "keywords", "tags")
CORE_COLUMNS: tuple[str, ...] = ("id", "scenario", "category", "questions", "script", "keywords", "tags", "status")
# Columns that export may write and import ignores: they describe the stored copy, not the script.
META_COLUMNS: frozenset[str] = frozenset(
    {"version", "kb_version", "created_at", "created_by", "updated_at", "updated_by", "author"}
)
# Header names seen in trainers' spreadsheets, mapped to the standard column names.
COLUMN_ALIASES: dict[str, str] = {
    "编号": "id",
    "话术编号": "id",
    "场景": "scenario",
    "场景名称": "scenario",
    "分类": "category",
    "类别": "category",
    "业务类型": "category",
    "问题": "questions",
    "客户问题": "questions",
    "相似问题": "questions",
    "话术": "script",
    "标准话术": "script",
    "答案": "script",
    "关键词": "keywords",
    "标签": "tags",
    "状态": "status",
}
STATUS_ALIASES: dict[str, str] = {
    "草稿": "draft",
    "待审核": "draft",
    "已审核": "approved",
    "已批准": "approved",
    "已发布": "approved",
    "发布": "approved",
    "停用": "retired",
    "已停用": "retired",
    "已下线": "retired",
}
# In CSV and Excel cells, list items are separated by | (and, in Excel, often by line breaks).
_LIST_SPLIT = re.compile(r"[|｜\n]")
_ID_RULE = re.compile(r"^[^\s|]{1,100}$")


@dataclass(slots=True)
class ScriptProblem:
    """One thing wrong with one row of a script file."""

    source: str
    line: int
    message: str
    field: str = ""
    script_id: str | None = None
    unit: str = "line"

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.unit == "line" else f"{self.source}:{self.unit} {self.line}"
        who = f" (script {self.script_id})" if self.script_id else ""
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}{who}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            self.unit: self.line,
            "script_id": self.script_id,
            "field": self.field,
            "message": self.message,
        }


class ScriptFileError(KefuError):
    """A script file has problems; `problems` lists every one of them."""

    def __init__(self, source: str, problems: list[ScriptProblem]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing was imported:\n{shown}{more}")


@dataclass(slots=True)
class ScriptRow:
    """A script read from a file, with where it came from and whether the row named a status."""

    script: Script
    line: int
    explicit_status: bool


def detect_script_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt is not None:
        if fmt not in SCRIPT_FORMATS:
            raise InputError(f"unknown script format {fmt!r}: choose one of {', '.join(SCRIPT_FORMATS)}")
        return fmt
    suffix = Path(str(path)).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix == ".xls":
        raise InputError(f"{path}: old .xls workbooks are not supported; save it as .xlsx (Excel 2007+) or CSV")
    raise InputError(
        f"{path}: cannot tell the format from the extension {suffix!r}; use .jsonl, .csv or .xlsx or pass --format"
    )


# -- reading ---------------------------------------------------------------------------------------


def read_scripts(
    path: str | Path, *, fmt: str | None = None, encoding: str | None = None, default_status: str = "approved"
) -> list[ScriptRow]:
    """Read and validate every row of a script file.

    Raises ScriptFileError listing every problem (with its line, or Excel row) when any row is bad,
    so that callers can import all rows or none. Raises InputError when the file cannot be read at all.
    """
    source = str(path)
    p = Path(source)
    if not p.exists():
        raise InputError(f"{source}: no such file")
    if p.is_dir():
        raise InputError(f"{source}: is a directory, expected a file")
    kind = detect_script_format(p, fmt)
    problems: list[ScriptProblem] = []
    rows: list[ScriptRow] = []
    seen: dict[str, int] = {}
    unit = "row" if kind == "xlsx" else "line"
    raw_rows = _xlsx_rows(p, source) if kind == "xlsx" else _text_rows(p, source, kind, encoding)
    for line, raw, row_problems in raw_rows:
        if row_problems:
            problems.extend(ScriptProblem(source, line, msg, unit=unit) for msg in row_problems)
            continue
        script, explicit, messages = parse_script(raw, default_status=default_status, cells=kind != "jsonl")
        sid = script.id if script is not None else _raw_id(raw)
        for field_name, message in messages:
            problems.append(ScriptProblem(source, line, message, field_name, sid, unit))
        if script is None:
            continue
        if script.id in seen:
            problems.append(
                ScriptProblem(source, line, f"duplicate id, first at {unit} {seen[script.id]}", "id", script.id, unit)
            )
            continue
        seen[script.id] = line
        rows.append(ScriptRow(script, line, explicit))
    if problems:
        raise ScriptFileError(source, problems)
    return rows


def _raw_id(raw: Any) -> str | None:
    if isinstance(raw, dict) and raw.get("id") not in (None, ""):
        return str(raw["id"]).strip()
    return None


def _text_rows(path: Path, source: str, kind: str, encoding: str | None) -> Iterator[tuple[int, Any, list[str]]]:
    text = read_text(path, encoding=encoding)
    if kind == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, [f"invalid JSON: {exc.msg} at column {exc.colno}"]
                continue
            if not isinstance(raw, dict):
                yield number, None, [f"expected a JSON object, got {type(raw).__name__}"]
                continue
            yield number, raw, []
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [_column(h) for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"{source}:1: bad CSV header ({exc})") from None
    _check_header(header, source, "line 1")
    last_end = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield last_end + 1, None, [f"bad CSV: {exc}"]
            last_end = reader.line_num
            continue
        start_line, last_end = last_end + 1, reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            yield start_line, None, [f"has {len(cells)} cells, the header has {len(header)}"]
            continue
        yield start_line, dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True)), []


def _column(name: Any) -> str:
    text = "" if name is None else str(name).strip().lstrip("\ufeff")
    return COLUMN_ALIASES.get(text, text)


def _check_header(header: list[str], source: str, where: str) -> None:
    missing = [c for c in REQUIRED_FIELDS if c not in header]
    if missing:
        raise InputError(
            f"{source}:{where}: the header must name the columns {', '.join(REQUIRED_FIELDS)} "
            f"(missing {', '.join(missing)}; found {', '.join(h for h in header if h) or 'nothing'})"
        )
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise InputError(f"{source}:{where}: column(s) named more than once: {', '.join(dupes)}")


def _xlsx_rows(path: Path, source: str) -> Iterator[tuple[int, Any, list[str]]]:
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - openpyxl is a core dependency
        raise InputError("reading .xlsx needs openpyxl: pip install openpyxl") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for files that are not workbooks
        raise InputError(f"{source}: not a readable .xlsx workbook ({exc})") from None
    try:
        sheet = book["scripts"] if "scripts" in book.sheetnames else book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header: list[str] | None = None
        for number, values in enumerate(rows, start=1):
            if header is None:
                if not any(v not in (None, "") for v in values):
                    continue  # blank rows above the header
                header = [_column(v) for v in values]
                _check_header(header, source, f"row {number}")
                continue
            cells = list(values)
            if not any(_cell_text(v) for v in cells):
                continue
            extra = [v for v in cells[len(header) :] if _cell_text(v)]
            if extra:
                yield number, None, [f"has values beyond the last named column ({len(header)} columns)"]
                continue
            cells += [None] * (len(header) - len(cells))
            yield number, {h: v for h, v in zip(header, cells, strict=False) if h}, []
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    """Text of a spreadsheet cell: Excel stores ids like 1001 as numbers (1001.0)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_script(
    raw: dict[str, Any], *, default_status: str = "approved", cells: bool = False
) -> tuple[Script | None, bool, list[tuple[str, str]]]:
    """Validate one raw row into a Script.

    `cells` says the values come from CSV/Excel cells: lists are `|`-separated text and JSON-looking
    extra cells ([…] or {…}) are decoded. Returns (script or None, whether the row named a status,
    [(field, message), …]).
    """
    problems: list[tuple[str, str]] = []

    def text(name: str, required: bool) -> str:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                problems.append((name, "is required"))
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problems.append((name, f"must be text, got {type(value).__name__}"))
            return ""
        return _cell_text(value)

    def items(name: str, required: bool) -> list[str]:
        value = raw.get(name)
        if value is None or value == "":
            out: list[str] = []
        elif isinstance(value, str):
            out = [v.strip() for v in (_LIST_SPLIT.split(value) if cells or "|" in value else [value])]
        elif isinstance(value, list):
            out = []
            for i, v in enumerate(value):
                if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                    problems.append((f"{name}[{i}]", f"must be text, got {type(v).__name__}"))
                    continue
                out.append(_cell_text(v))
        elif isinstance(value, (int, float)) and cells:
            out = [_cell_text(value)]
        else:
            problems.append((name, f"must be a list of texts (or text separated by |), got {type(value).__name__}"))
            out = []
        out = [v for v in out if v]
        if required and not out and not any(f == name or f.startswith(name + "[") for f, _ in problems):
            problems.append((name, "needs at least one non-empty entry"))
        return out

    sid = text("id", True)
    if sid and not _ID_RULE.match(sid):
        problems.append(("id", f"must be 1–100 characters without spaces or '|', got {sid!r}"))
    scenario = text("scenario", True)
    questions = items("questions", True)
    body = text("script", True)
    category = text("category", False)
    keywords = items("keywords", False)
    tags = items("tags", False)
    status_raw = text("status", False)
    explicit = bool(status_raw)
    status = STATUS_ALIASES.get(status_raw, status_raw.lower()) if explicit else default_status
    if status not in STATUSES:
        problems.append(("status", f"must be one of {', '.join(STATUSES)}, got {status_raw!r}"))
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in CORE_COLUMNS or key in META_COLUMNS or not key:
            continue
        if cells:
            value = _cell_value(value)
            if value is None:
                continue
        extra[key] = value
    if problems:
        return None, explicit, problems
    script = Script(
        id=sid,
        scenario=scenario,
        questions=questions,
        script=body,
        category=category,
        keywords=keywords,
        tags=tags,
        status=status,
        extra=extra,  # type: ignore[arg-type]
    )
    return script, explicit, []


def _cell_value(value: Any) -> Any:
    """An extra column's value from a cell: empty → absent, JSON lists/objects decoded, else text."""
    if value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return None
        if stripped[0] in "[{":
            try:
                return json.loads(stripped)
            except json.JSONDecodeError:
                return stripped
        return stripped
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, (int, float, bool)) else str(value)


# -- writing ---------------------------------------------------------------------------------------


def _columns(scripts: list[Script], with_status: bool) -> list[str]:
    columns = [c for c in CORE_COLUMNS if with_status or c != "status"]
    for s in scripts:
        for key in s.extra:
            if key not in columns:
                columns.append(key)
    return columns


def script_record(script: Script, *, with_status: bool = True) -> dict[str, Any]:
    """A script as one exported JSON object: its content, plus its status."""
    record = script.content()
    if with_status:
        record["status"] = script.status
    return record


def _flat(script: Script, with_status: bool) -> dict[str, Any]:
    record = script_record(script, with_status=with_status)
    for name in LIST_FIELDS:
        record[name] = "|".join(record.get(name) or [])
    for key, value in list(record.items()):
        if key not in CORE_COLUMNS and not isinstance(value, str) and value is not None:
            record[key] = json.dumps(value, ensure_ascii=False)
    return record


def write_scripts(
    scripts: Iterable[Script], path: str | Path, *, fmt: str | None = None, with_status: bool = True
) -> int:
    """Write scripts as JSON Lines, CSV or .xlsx; files are replaced atomically. Returns the count.

    `path` '-' writes JSON Lines (or CSV with fmt='csv') to standard output.
    """
    items = list(scripts)
    stdout = str(path) == "-"
    kind = fmt or ("jsonl" if stdout else detect_script_format(path))
    if kind not in SCRIPT_FORMATS:
        raise InputError(f"unknown script format {kind!r}: choose one of {', '.join(SCRIPT_FORMATS)}")
    if kind == "jsonl":
        with JsonlWriter(None if stdout else path) as writer:
            for s in items:
                writer.write(script_record(s, with_status=with_status))
        return len(items)
    if kind == "csv":
        # utf-8 without BOM: Excel users can open it via Data → From Text, and it reads back here as-is.
        with CsvWriter(None if stdout else path, _columns(items, with_status)) as csv_writer:
            for s in items:
                csv_writer.write(_flat(s, with_status))
        return len(items)
    if stdout:
        raise InputError("cannot write .xlsx to standard output; give a file name")
    _write_xlsx(items, Path(path), with_status)
    return len(items)


def _write_xlsx(scripts: list[Script], path: Path, with_status: bool) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "scripts"
    columns = _columns(scripts, with_status)
    sheet.append(columns)
    for s in scripts:
        record = _flat(s, with_status)
        sheet.append([record.get(c, "") for c in columns])
    with atomic_path(path, suffix=".part.xlsx") as tmp:
        book.save(tmp)
