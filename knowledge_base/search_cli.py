"""`kefu kb search` and `kefu kb embed`: query a knowledge base's index and compare texts with its encoder."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kefu.io import CsvWriter, InputError, JsonlWriter
from kefu.progress import progress
from kefu.settings import get_settings

log = logging.getLogger(__name__)

KbOpt = Annotated[Path | None, typer.Option("--kb", help="Knowledge-base directory (default $KEFU_HOME/kb).")]


def _kb(kb: Path | None) -> Path:
    return kb if kb is not None else get_settings().kb_dir


def search(
    text: Annotated[str | None, typer.Argument(help="The customer's words (omit with --queries).")] = None,
    kb: KbOpt = None,
    k: Annotated[int, typer.Option("-k", "--top", help="How many scripts to return.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as one JSON object.")] = False,
    queries: Annotated[
        Path | None, typer.Option("--queries", help='Batch input: JSON Lines of {"id": …, "text": …}.')
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Batch output JSON Lines ('-' for stdout).")] = "-",
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score", help="Suggest nothing below this calibrated score (0–1); default: the index threshold."
        ),
    ] = None,
) -> None:
    """Top-k scripts for one text, or for every line of a --queries file.

    Each hit has a calibrated score (0–1, the estimated probability that the script answers the
    text); scripts below the threshold are not suggested. Batch output has one line per input line,
    in the same order: {"id", "hits": [{"id", "score"}, …]}, or {"id", "error"} for a bad line.
    """
    from knowledge_base.index.manager import IndexManager

    if k < 1:
        raise InputError(f"-k must be >= 1, got {k}")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise InputError(f"--min-score must be within 0–1, got {min_score}")
    if (text is None) == (queries is None):
        raise InputError("give either a TEXT to search or --queries FILE, not both or neither")
    retriever = IndexManager(_kb(kb)).retriever()
    if text is not None:
        hits = retriever.search(text, k, threshold=min_score)
        if as_json:
            typer.echo(json.dumps({"text": text, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
            return
        if not hits:
            typer.echo("no script scores above the threshold")
        for rank, h in enumerate(hits, 1):
            terms = f"  [{', '.join(h.matched_terms)}]" if h.matched_terms else ""
            typer.echo(f"{rank}. {h.id}  {h.score:.3f}  {h.scenario}\n   matched: {h.matched[:60]}{terms}")
        return
    assert queries is not None
    with JsonlWriter(output) as out:
        for _line, record in progress(_read_queries(queries), desc="search", unit="query"):
            if "error" in record:
                out.write(record)
                continue
            hits = retriever.search(record["text"], k, threshold=min_score)
            out.write({"id": record["id"], "hits": [{"id": h.id, "score": round(h.score, 4)} for h in hits]})


def _read_queries(path: Path) -> Any:
    """(line, record) per non-blank line; a bad line becomes {"id", "error"} so output stays line-aligned."""
    try:
        fh = open(path, encoding="utf-8-sig")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read the queries file: {exc.strerror}") from exc
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except ValueError as exc:
                yield n, {"id": None, "error": f"{where}: not valid JSON ({exc.msg})"}
                continue
            if not isinstance(obj, dict):
                yield n, {"id": None, "error": f"{where}: expected a JSON object with id and text"}
                continue
            qid = obj.get("id")
            if not isinstance(obj.get("text"), str) or not obj["text"].strip():
                yield n, {"id": qid, "error": f"{where}: `text` must be a non-empty string"}
                continue
            yield n, {"id": qid, "text": obj["text"]}


def embed(
    pairs: Annotated[Path, typer.Option("--pairs", help="TSV (or .csv) with columns q1 and q2; others pass through.")],
    kb: KbOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output TSV (.csv for commas; '-' for stdout).")] = "-",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows encoded at once.")] = 2048,
) -> None:
    """Add a `similarity` column: the cosine of q1 and q2 under the knowledge base's encoder."""
    from knowledge_base.index.manager import IndexManager

    if batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {batch_size}")
    encoder = IndexManager(_kb(kb)).encoder()
    delimiter = "," if str(pairs).lower().endswith(".csv") else "\t"
    try:
        fh = open(pairs, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{pairs}: cannot read the pairs file: {exc.strerror}") from exc
    with fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        columns = list(reader.fieldnames or [])
        missing = [c for c in ("q1", "q2") if c not in columns]
        if missing:
            raise InputError(f"{pairs}:1: missing column(s) {', '.join(missing)}; the header has {columns}")
        out_delim = "," if output.lower().endswith(".csv") else "\t"
        fields = [*columns, "similarity"] if "similarity" not in columns else columns
        with CsvWriter(output, fields, delimiter=out_delim) as out:
            batch: list[dict[str, Any]] = []
            for row in progress(reader, desc="embed", unit="pair"):
                batch.append(row)
                if len(batch) >= batch_size:
                    _write_pairs(encoder, batch, out)
                    batch = []
            if batch:
                _write_pairs(encoder, batch, out)
    if output != "-":
        log.info("wrote %s", output)
    sys.stdout.flush()


def _write_pairs(encoder: Any, rows: list[dict[str, Any]], out: CsvWriter) -> None:
    a = encoder.encode([r.get("q1") or "" for r in rows])
    b = encoder.encode([r.get("q2") or "" for r in rows])
    sims = (a * b).sum(axis=1)
    for row, s in zip(rows, sims.tolist(), strict=True):
        row.pop(None, None)  # cells beyond the header
        out.write({**{k: ("" if v is None else v) for k, v in row.items()}, "similarity": f"{s:.6f}"})


def train_encoder_cmd(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to save (default $KEFU_HOME/models/kb-encoder, which new indexes pick up)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs (the best on validation is kept).")] = 2,
) -> None:
    """Train the built-in encoder on the bundled scripts' question groups and the ATEC train split."""
    from training.encoder import TrainConfig, train_encoder

    target = output or get_settings().models_dir / "kb-encoder"
    enc, metrics = train_encoder(cfg=TrainConfig(epochs=epochs))
    enc.save(target)
    typer.echo(f"saved {target}: {json.dumps(metrics)}")


def register(app: typer.Typer) -> None:
    """Add `search`, `embed` and `train-encoder` to the `kefu kb` command group."""
    app.command("search")(search)
    app.command("embed")(embed)
    app.command("train-encoder")(train_encoder_cmd)
