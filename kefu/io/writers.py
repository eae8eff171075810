"""Crash-safe writers for JSON Lines and CSV outputs."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from kefu.schemas import Transcript

log = logging.getLogger(__name__)

WriteMode = Literal["atomic", "append"]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def repair_partial_tail(path: Path) -> int:
    """Cut an unfinished last line (left by a crash) so appends start on a clean line.

    Returns the number of bytes removed.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        pos = size
        block = 4096
        while pos > 0:
            step = min(block, pos)
            fh.seek(pos - step)
            chunk = fh.read(step)
            idx = chunk.rfind(b"\n")
            if idx != -1:
                keep = pos - step + idx + 1
                break
            pos -= step
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
            log.warning("%s: removed an unfinished last line (%d bytes)", path, size - keep)
        return size - keep


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".part") -> Iterator[Path]:
    """Yield a temporary path beside `path`; on a clean exit it replaces `path`, otherwise it is removed.

    For writers that need a file name (openpyxl, HTML rendering): readers never see half a file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _OutputFile:
    """An output that is either stdout, an atomically replaced file, or an append-only file.

    In `atomic` mode the data goes to a temporary file beside the target and replaces it only
    when the block exits cleanly: a crash or Ctrl-C leaves any previous output untouched.
    In `append` mode every record is a whole line flushed at once, and an unfinished last line
    from an earlier crash is cut first, so a resumed job never sees half a record.
    """

    def __init__(self, path: str | Path | None, mode: WriteMode = "atomic", newline: str | None = None) -> None:
        if mode not in ("atomic", "append"):
            raise ValueError(f"mode must be 'atomic' or 'append', got {mode!r}")
        self.path = None if path in (None, "-") else Path(path)
        self.mode = mode
        self.newline = newline
        self._fh: IO[str] | None = None
        self._tmp: Path | None = None

    def open(self) -> IO[str]:
        if self.path is None:
            self._fh = sys.stdout
            return self._fh
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.mode == "append":
            repair_partial_tail(self.path)
            self._fh = open(self.path, "a", encoding="utf-8", newline=self.newline)  # noqa: SIM115
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
            self._tmp = Path(tmp)
            self._fh = os.fdopen(fd, "w", encoding="utf-8", newline=self.newline)
        return self._fh

    def close(self, ok: bool) -> None:
        if self._fh is None:
            return
        if self._fh is sys.stdout:
            self._fh.flush()
            return
        try:
            self._fh.flush()
            if ok:
                os.fsync(self._fh.fileno())
        finally:
            self._fh.close()
        if self._tmp is not None:
            if ok:
                os.replace(self._tmp, self.path)  # type: ignore[arg-type]
            else:
                self._tmp.unlink(missing_ok=True)


class JsonlWriter:
    """Write one JSON object per line; use as a context manager."""

    def __init__(self, path: str | Path | None, mode: WriteMode = "atomic", flush_every: int = 1) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self._out = _OutputFile(path, mode)
        self._fh: IO[str] | None = None
        self.flush_every = flush_every
        self.count = 0

    def __enter__(self) -> JsonlWriter:
        self._fh = self._out.open()
        return self

    def write(self, obj: Any) -> None:
        if self._fh is None:
            raise RuntimeError("JsonlWriter.write called outside its with-block")
        if isinstance(obj, Transcript):
            obj = obj.to_dict()
        # One write call per record keeps lines whole even when the process is killed between calls.
        self._fh.write(_dumps(obj) + "\n")
        self.count += 1
        if self.count % self.flush_every == 0:
            self._fh.flush()

    def write_all(self, objs: Iterable[Any]) -> int:
        for obj in objs:
            self.write(obj)
        return self.count

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._out.close(ok=exc_type is None)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return _dumps(value)
    return value


class CsvWriter:
    """Write dict records as CSV rows with a fixed header (nested values as JSON text).

    The header is `fieldnames`, or the keys of the first record; keys that appear only later are
    dropped with one warning, since a streamed CSV cannot grow columns.
    """

    def __init__(
        self,
        path: str | Path | None,
        fieldnames: Sequence[str] | None = None,
        mode: WriteMode = "atomic",
        delimiter: str = ",",
    ) -> None:
        self._out = _OutputFile(path, mode, newline="")
        self.fieldnames = list(fieldnames) if fieldnames else None
        self.delimiter = delimiter
        self._writer: csv.DictWriter[str] | None = None
        self._fh: IO[str] | None = None
        self._warned = False
        self.count = 0

    def __enter__(self) -> CsvWriter:
        self._fh = self._out.open()
        return self

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            raise RuntimeError("CsvWriter.write called outside its with-block")
        if self._writer is None:
            self.fieldnames = self.fieldnames or list(record)
            self._writer = csv.DictWriter(self._fh, self.fieldnames, extrasaction="ignore", delimiter=self.delimiter)
            appending = self._out.mode == "append" and self._out.path is not None and self._fh.tell() > 0
            if not appending:
                self._writer.writeheader()
        extra = set(record) - set(self.fieldnames or ())
        if extra and not self._warned:
            log.warning("CSV output: dropping columns not in the header: %s", ", ".join(sorted(extra)))
            self._warned = True
        self._writer.writerow({k: _cell(record.get(k)) for k in self.fieldnames or ()})
        self.count += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._out.close(ok=exc_type is None)


class TranscriptCsvWriter:
    """Write transcripts as CSV with one row per turn (the per-turn shape the readers accept)."""

    def __init__(self, path: str | Path | None, call_columns: Sequence[str] = (), mode: WriteMode = "atomic") -> None:
        self.call_columns = list(call_columns)
        self._csv = CsvWriter(path, ["call_id", *self.call_columns, "role", "text", "start", "end"], mode)

    def __enter__(self) -> TranscriptCsvWriter:
        self._csv.__enter__()
        return self

    def write(self, transcript: Transcript) -> None:
        meta = {k: transcript.extra.get(k) for k in self.call_columns}
        for turn in transcript.turns:
            self._csv.write(
                {
                    "call_id": transcript.call_id,
                    **meta,
                    "role": turn.role,
                    "text": turn.text,
                    "start": turn.start,
                    "end": turn.end,
                }
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._csv.__exit__(exc_type, exc, tb)
