"""Streaming readers for transcripts in JSON Lines, CSV/TSV, Parquet and plain text."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from kefu.io.errors import InputError, OnError, Record, RecordError
from kefu.schemas import Problem, parse_transcript

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv", "tsv", "parquet", "text")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".text": "text",
}
STDIN_NAMES = ("-", "")
TURN_COLUMNS = ("role", "text", "start", "end")
# CSV columns with this prefix belong to the turn (e.g. turn_label); all others describe the call.
TURN_PREFIX = "turn_"


def detect_format(path: str | Path | None, head: str = "") -> str:
    """Pick a format from the file extension, or from the first characters when reading stdin."""
    if path not in (None, *STDIN_NAMES):
        suffix = Path(str(path)).suffix.lower()
        if suffix in _EXTENSIONS:
            return _EXTENSIONS[suffix]
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped.startswith("{"):
        return "jsonl"
    first_line = stripped.split("\n", 1)[0]
    if "call_id" in first_line and "\t" in first_line:
        return "tsv"
    if "call_id" in first_line and "," in first_line:
        return "csv"
    if stripped.startswith("PAR1"):
        return "parquet"
    if path not in (None, *STDIN_NAMES):
        raise InputError(
            f"{path}: cannot tell the format from the extension {Path(str(path)).suffix!r}; "
            f"use one of {', '.join(sorted(_EXTENSIONS))} or pass --format ({'/'.join(FORMATS)})"
        )
    return "text"


def _source_name(path: str | Path | None) -> str:
    return "<stdin>" if path in (None, *STDIN_NAMES) else str(path)


class _DecodingLines:
    """Iterate decoded lines of a byte stream, turning decode failures into InputError with a line."""

    def __init__(self, raw: IO[bytes], source: str, encoding: str) -> None:
        self.raw = raw
        self.source = source
        self.encoding = encoding
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="strict")
        pending = ""
        first = True
        while True:
            chunk = self.raw.read(1 << 16)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{self.source}:{self.line + pending.count(chr(10)) + 1}: cannot decode the file as "
                    f"{self.encoding} ({exc.reason}); convert it to UTF-8 or pass --encoding (e.g. gb18030)"
                ) from None
            if first:
                text = text.lstrip("\ufeff")
                first = False
            pending += text
            *complete, pending = pending.split("\n")
            for line in complete:
                self.line += 1
                yield line + "\n"
            if not chunk:
                break
        if pending:
            self.line += 1
            yield pending


def _guess_encoding(raw: IO[bytes], source: str) -> str:
    """UTF-8 unless the first 64 KiB are not UTF-8 but are GB18030 (common in Chinese Excel exports)."""
    peek = raw.peek(1 << 16)[: 1 << 16] if hasattr(raw, "peek") else b""
    try:
        peek.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(peek) - 3:  # a multi-byte character cut by the peek window
            return "utf-8"
    try:
        peek.decode("gb18030")
    except UnicodeDecodeError:
        raise InputError(f"{source}: the file is neither UTF-8 nor GB18030 text; pass --encoding") from None
    log.info("%s: not UTF-8, reading it as GB18030", source)
    return "gb18030"


def _resolve_encoding(raw: IO[bytes], source: str, encoding: str | None) -> str:
    """The encoding asked for (checked to exist) or the guessed one."""
    enc = encoding or _guess_encoding(raw, source)
    try:
        codecs.lookup(enc)
    except LookupError:
        raise InputError(f"unknown encoding {enc!r}") from None
    return enc


def read_text(path: str | Path, *, encoding: str | None = None) -> str:
    """A whole text file under the readers' encoding policy: UTF-8 (BOM stripped), else GB18030.

    For small inputs that are validated as a whole (script libraries); decode failures are an
    InputError with the line, like the streaming readers'.
    """
    source = str(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the with-block below
    except OSError as exc:
        raise InputError(f"{source}: cannot open ({exc.strerror})") from None
    with raw:
        return "".join(_DecodingLines(raw, source, _resolve_encoding(raw, source, encoding)))


def iter_records(
    path: str | Path | None = None,
    *,
    fmt: str | None = None,
    encoding: str | None = None,
    stream: IO[bytes] | None = None,
) -> Iterator[Record]:
    """Yield every call of an input as a Record (valid or not), streaming, in input order.

    `path` None or "-" reads standard input (or `stream`). Raises InputError when the input as a
    whole cannot be read.
    """
    source = _source_name(path)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if stream is None and path not in (None, *STDIN_NAMES):
        p = Path(str(path))
        if not p.exists():
            raise InputError(f"{source}: no such file")
        if p.is_dir():
            raise InputError(f"{source}: is a directory, expected a file")
    if (fmt or (detect_format(path) if path not in (None, *STDIN_NAMES) else None)) == "parquet":
        yield from _iter_parquet(path if stream is None else stream, source)
        return
    opened = False
    if stream is None:
        if path in (None, *STDIN_NAMES):
            stream = sys.stdin.buffer
        else:
            try:
                stream = open(str(path), "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InputError(f"{source}: cannot open ({exc.strerror})") from None
            opened = True
    try:
        raw = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
        enc = _resolve_encoding(raw, source, encoding)
        if fmt is None:
            head = raw.peek(4096)[:4096].decode(enc, errors="ignore") if hasattr(raw, "peek") else ""
            fmt = detect_format(path, head)
        if fmt == "parquet":  # sniffed from stdin
            yield from _iter_parquet(io.BytesIO(raw.read()), source)
            return
        lines = _DecodingLines(raw, source, enc)
        if fmt == "jsonl":
            yield from _iter_jsonl(lines, source)
        elif fmt in ("csv", "tsv"):
            yield from _iter_rows(_csv_rows(lines, source, "\t" if fmt == "tsv" else ","), source, "line")
        else:
            yield from _iter_text(lines, source, path)
    finally:
        if opened:
            stream.close()


def _make_record(raw: Any, source: str, line: int, unit: str = "line", turn_lines: list[int] | None = None) -> Record:
    transcript, problems = parse_transcript(raw)
    if turn_lines:
        # Per-turn inputs (CSV rows, text lines): point each turn's problem at its own line.
        for problem in problems:
            m = _TURN_PATH.match(problem.path)
            if m and int(m.group(1)) < len(turn_lines):
                problem.path = f"{unit} {turn_lines[int(m.group(1))]} ({problem.path})"
    call_id = raw.get("call_id") if isinstance(raw, dict) else None
    return Record(source, line, transcript, problems, None if call_id is None else str(call_id), unit)


_TURN_PATH = re.compile(r"^turns\[(\d+)\]")


def _iter_jsonl(lines: Iterable[str], source: str) -> Iterator[Record]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(source, number, None, [Problem(f"invalid JSON: {exc.msg} at column {exc.colno}")])
            continue
        yield _make_record(raw, source, number)


def _csv_rows(lines: Iterable[str], source: str, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) for each CSV row; multi-line quoted cells count from their first line."""
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [h.strip() for h in header]
    missing = [c for c in ("call_id", "role", "text") if c not in header]
    if missing:
        raise InputError(
            f"{source}:1: the header must name the columns call_id, role and text "
            f"(missing {', '.join(missing)}; found {', '.join(header) or 'nothing'})"
        )
    last_end = reader.line_num
    for cells in reader:
        start_line = last_end + 1
        last_end = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            call_id = cells[header.index("call_id")].strip()
            yield start_line, {"__error__": f"has {len(cells)} cells, the header has {len(header)}", "call_id": call_id}
            continue
        # Short rows just leave trailing optional columns (start, end, …) empty, as spreadsheets write them.
        yield start_line, dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))


def _iter_rows(rows: Iterable[tuple[int, dict[str, Any]]], source: str, unit: str) -> Iterator[Record]:
    """Group consecutive per-turn rows with the same call_id into one call each."""
    seen: set[str] = set()
    current: str | None = None
    first_line = 0
    call: dict[str, Any] = {}
    problems: list[Problem] = []
    turn_lines: list[int] = []

    def flush() -> Record:
        record = _make_record(call, source, first_line, unit, turn_lines)
        record.problems[:0] = problems
        if problems:
            record.transcript = None
        return record

    for number, row in rows:
        if "__error__" in row:
            if current is not None and row.get("call_id") == current:
                problems.append(Problem(row["__error__"], f"{unit} {number}"))
            else:
                if current is not None:
                    yield flush()
                    current = None
                yield Record(source, number, None, [Problem(row["__error__"])], row.get("call_id") or None, unit)
            continue
        call_id = row.get("call_id")
        call_id = "" if call_id is None else str(call_id).strip()
        if call_id != current:
            if current is not None:
                yield flush()
            if call_id and call_id in seen:
                yield Record(
                    source,
                    number,
                    None,
                    [Problem(f"rows of call {call_id} are not contiguous: sort the file by call_id")],
                    call_id,
                    unit,
                )
                current = None
                continue
            if call_id:
                seen.add(call_id)
            current, first_line, problems, turn_lines = call_id, number, [], []
            meta = {k: v for k, v in row.items() if k not in TURN_COLUMNS and not k.startswith(TURN_PREFIX)}
            call = {**{k: v for k, v in meta.items() if v not in (None, "")}, "call_id": call_id or None, "turns": []}
        turn = {k: row.get(k) for k in TURN_COLUMNS if row.get(k) not in (None, "")}
        turn.update({k[len(TURN_PREFIX) :]: v for k, v in row.items() if k.startswith(TURN_PREFIX)})
        if row.get("text") == "":
            turn["text"] = ""
        call["turns"].append(turn)
        turn_lines.append(number)
    if current is not None:
        yield flush()


def _iter_parquet(path_or_stream: Any, source: str) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise InputError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        pfile = pq.ParquetFile(path_or_stream)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise InputError(f"{source}: not a readable Parquet file ({exc})") from None
    names = pfile.schema_arrow.names
    if "turns" in names:
        row = 0
        for batch in pfile.iter_batches(batch_size=1024):
            for raw in batch.to_pylist():
                row += 1
                yield _make_record(raw, source, row, "row")
        return
    missing = [c for c in ("call_id", "role", "text") if c not in names]
    if missing:
        raise InputError(
            f"{source}: a Parquet file needs a turns column (one call per row) or the columns "
            f"call_id, role and text (one turn per row); missing {', '.join(missing)}"
        )

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        n = 0
        for batch in pfile.iter_batches(batch_size=4096):
            for raw in batch.to_pylist():
                n += 1
                yield n, raw

    yield from _iter_rows(rows(), source, "row")


_TEXT_TURN = re.compile(
    r"^\s*(?:\[(?P<start>[\d:.]+)\s*[-~–]\s*(?P<end>[\d:.]+)\]\s*)?"
    r"(?P<role>坐席|座席|客服|客户|用户|agent|customer)\s*[：:]\s*(?P<text>.*?)\s*$",
    re.IGNORECASE,
)
_TEXT_HEADER = re.compile(r"^\s*#\s*(?:(?P<key>[A-Za-z_]+)\s*[：:]\s*)?(?P<value>.*?)\s*$")


def _clock(value: str) -> float:
    """Seconds from '12.5', '01:02.5' or '1:02:03'."""
    seconds = 0.0
    for part in value.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _iter_text(lines: Iterable[str], source: str, path: str | Path | None) -> Iterator[Record]:
    """Plain text: one `坐席：…` / `客户：…` line per turn, optional `[start-end]` prefix.

    A `# call_id: C001` (or `# C001`) line starts a new call; `# key: value` sets call metadata.
    Without a header the whole file is one call named after the file.
    """
    default_id = Path(str(path)).stem if path not in (None, *STDIN_NAMES) else "stdin"
    call: dict[str, Any] | None = None
    first_line = 0
    problems: list[Problem] = []
    turn_lines: list[int] = []

    def flush() -> Record:
        record = _make_record(call, source, first_line, "line", turn_lines)
        record.problems[:0] = problems
        if problems:
            record.transcript = None
        return record

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        header = _TEXT_HEADER.match(line) if line.lstrip().startswith("#") else None
        if header:
            key, value = header.group("key"), header.group("value")
            starts_call = key in (None, "call_id", "call")
            if call is not None and call["turns"] and starts_call:
                yield flush()
                call = None
            if call is None:
                call, first_line, problems, turn_lines = {"call_id": default_id, "turns": []}, number, [], []
            if starts_call:
                if value:
                    call["call_id"] = value
            else:
                call[key] = value
            continue
        if call is None:
            call, first_line, problems, turn_lines = {"call_id": default_id, "turns": []}, number, [], []
        match = _TEXT_TURN.match(line)
        if not match:
            problems.append(Problem(f"expected '坐席：…' or '客户：…', got {line.strip()[:30]!r}", f"line {number}"))
            continue
        turn: dict[str, Any] = {"role": match.group("role"), "text": match.group("text")}
        if match.group("start"):
            try:
                turn["start"], turn["end"] = _clock(match.group("start")), _clock(match.group("end"))
            except ValueError:
                problems.append(
                    Problem(f"bad time range [{match.group('start')}-{match.group('end')}]", f"line {number}")
                )
        call["turns"].append(turn)
        turn_lines.append(number)
    if call is not None:
        yield flush()


def read_transcripts(
    path: str | Path | None = None,
    *,
    fmt: str | None = None,
    encoding: str | None = None,
    on_error: OnError = "fail",
    errors: list[Record] | None = None,
) -> Iterator[Any]:
    """Yield valid Transcripts; a bad record raises RecordError (`fail`) or is logged and skipped.

    Skipped records are appended to `errors` when given, so callers can report or count them.
    """
    for record in iter_records(path, fmt=fmt, encoding=encoding):
        if record.ok:
            yield record.transcript
            continue
        if on_error == "fail":
            raise RecordError(record)
        log.warning("skipped %s", record.describe())
        if errors is not None:
            errors.append(record)
