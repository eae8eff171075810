"""What every engine runs: a picklable job spec, chunking, and scoring one chunk into output lines."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from kefu.io import InputError, JsonlWriter, Record, iter_records
from qa_inspect.scoring import Scorer, error_line, load_classifier

log = logging.getLogger(__name__)


def dumps(obj: Any) -> str:
    """The JSON form of one output line (the same as kefu.io.JsonlWriter writes)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True, slots=True)
class ScoreJob:
    """Everything a worker needs to build its Scorer once: paths only, so it pickles cheaply."""

    scorecard: str | None = None
    model_dir: str | None = None
    chunk_size: int = 64
    # Torch threads per worker when a classifier is loaded (workers × threads should not exceed the cores).
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")

    def build_scorer(self) -> Scorer:
        from qa_inspect.scorecard import load_scorecard

        classifier = None
        if self.model_dir:
            os.environ.setdefault("OMP_NUM_THREADS", str(self.torch_threads))
            try:
                import torch

                torch.set_num_threads(self.torch_threads)
            except ImportError:  # a classifier without torch (e.g. a fake in tests) needs no threads
                pass
            classifier = load_classifier(self.model_dir, threads=self.torch_threads)
        return Scorer(load_scorecard(self.scorecard), classifier)


@dataclass(frozen=True, slots=True)
class RawChunk:
    """Consecutive raw lines of a JSON Lines file, parsed by the worker rather than the reader process.

    `offset` is the number of file lines before `data`, so records keep their real line numbers.
    """

    source: str
    offset: int
    data: bytes
    encoding: str

    def records(self) -> list[Record]:
        out = []
        for r in iter_records(stream=io.BytesIO(self.data), fmt="jsonl", encoding=self.encoding):
            r.source = self.source
            r.line += self.offset
            out.append(r)
        return out


Chunk = list[Record] | RawChunk


def chunked(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield chunk


def guess_encoding(path: Path) -> str:
    """UTF-8 unless the head of the file is not UTF-8 but is GB18030 (as kefu.io's readers decide)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut by the window
            return "utf-8"
    try:
        head.decode("gb18030")
    except UnicodeDecodeError:
        raise InputError(f"{path}: the file is neither UTF-8 nor GB18030 text; pass --encoding") from None
    return "gb18030"


def raw_chunks(path: Path, size: int, encoding: str | None = None, skip: int = 0) -> Iterator[RawChunk]:
    """Chunks of `size` calls (non-empty lines) of a JSON Lines file, after skipping `skip` calls.

    The reader process only splits bytes into lines; decoding and validation happen in the workers.
    """
    enc = encoding or guess_encoding(path)
    source = str(path)
    with open(path, "rb") as fh:
        lineno = 0
        skipped = 0
        while skipped < skip:
            line = fh.readline()
            if not line:
                return
            lineno += 1
            skipped += bool(line.strip())
        buf: list[bytes] = []
        calls, start = 0, lineno
        for line in fh:
            lineno += 1
            buf.append(line)
            if line.strip():
                calls += 1
                if calls == size:
                    yield RawChunk(source, start, b"".join(buf), enc)
                    buf, calls, start = [], 0, lineno
        if calls:
            yield RawChunk(source, start, b"".join(buf), enc)


def score_chunk(scorer: Scorer, chunk: Chunk) -> list[str]:
    """Output lines for a chunk of input records, in order: a score line or an error line each."""
    if isinstance(chunk, RawChunk):
        chunk = chunk.records()
    good = [r.transcript for r in chunk if r.ok]
    scored = iter(scorer.score_batch(good)) if good else iter(())
    lines = []
    for r in chunk:
        if r.ok:
            lines.append(dumps(next(scored)))
        else:
            lines.append(dumps(error_line(r.call_id, "; ".join(str(p) for p in r.errors), r.where())))
    return lines


class Engine(Protocol):
    """Runs a ScoreJob over input chunks and yields output lines in input order."""

    name: str

    def run(self, chunks: Iterable[Chunk]) -> Iterator[str]: ...


class LineWriter(JsonlWriter):
    """JsonlWriter that also takes lines already serialised by the workers."""

    def write_line(self, line: str) -> None:
        if self._fh is None:
            raise RuntimeError("LineWriter.write_line called outside its with-block")
        self._fh.write(line + "\n")  # one write per line: a kill leaves whole lines only (plus a cut tail)
        self.count += 1
        if self.count % self.flush_every == 0:
            self._fh.flush()
