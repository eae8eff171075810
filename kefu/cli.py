"""The `kefu` command line: global options, shared commands and the per-package command groups."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections import Counter
from typing import Annotated, Any

import typer

from kefu import __version__
from kefu.io import FORMATS, InputError, JsonlWriter, KefuError, TranscriptCsvWriter, iter_records
from kefu.logs import configure_logging
from kefu.progress import progress, state
from kefu.settings import get_settings

log = logging.getLogger(__name__)

app = typer.Typer(
    name="kefu",
    help="kefu (客服): agent assist and quality inspection for a power utility's customer-service hotline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

# Command groups owned by the other packages: (name, module, attribute, kind). Each module keeps its
# heavy imports (torch, faiss) inside the commands so that `kefu --help` stays fast.
GROUPS: list[tuple[str, str, str, str]] = [
    ("kb", "knowledge_base.cli", "app", "group"),
    ("train", "training.cli", "app", "group"),
    ("qa", "qa_inspect.cli", "app", "group"),
    ("assist", "assist.cli", "app", "group"),
    ("serve", "assist.cli", "serve", "command"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kefu {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """kefu (客服): agent assist and quality inspection for a power utility's customer-service hotline.

    Data lives under $KEFU_HOME (default ./var) unless a command is given a path.
    """
    state.quiet = quiet
    configure_logging(-1 if quiet else verbose)


FileArg = Annotated[
    str | None, typer.Argument(help="Transcript file (.jsonl, .csv, .tsv, .parquet, .txt); stdin when omitted or '-'.")
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", "-f", help=f"Input format ({'/'.join(FORMATS)}); guessed when omitted.")
]
EncodingOpt = Annotated[
    str | None, typer.Option("--encoding", help="Input text encoding; UTF-8 or GB18030 is detected when omitted.")
]


@app.command()
def validate(
    file: FileArg = None,
    fmt: FormatOpt = None,
    encoding: EncodingOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Count warnings as problems too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per problem instead of text.")] = False,
) -> None:
    """Check a transcript file and report every problem with its line.

    Exit code 0 when the file is clean, 2 when any call has an error (or a warning with --strict).
    """
    calls = bad = warned = 0
    ids: Counter[str] = Counter()
    first_seen: dict[str, str] = {}
    out = sys.stdout

    def report(record: Any, severity: str, problems: list[Any]) -> None:
        if as_json:
            for p in problems:
                out.write(
                    json.dumps(
                        {
                            "source": record.source,
                            record.unit: record.line,
                            "call_id": record.call_id,
                            "severity": severity,
                            "field": p.path,
                            "message": p.message,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        else:
            out.write(f"{severity}: {record.describe(severity)}\n")

    for record in progress(iter_records(file, fmt=fmt, encoding=encoding), desc="validate", unit="call"):
        calls += 1
        if record.errors:
            bad += 1
            report(record, "error", record.errors)
        if record.warnings:
            warned += 1
            report(record, "warning", record.warnings)
        if record.call_id is not None:
            ids[record.call_id] += 1
            if ids[record.call_id] == 2:
                warned += 1
                where = first_seen[record.call_id]
                if as_json:
                    out.write(
                        json.dumps(
                            {
                                "source": record.source,
                                record.unit: record.line,
                                "call_id": record.call_id,
                                "severity": "warning",
                                "field": "call_id",
                                "message": f"duplicate call_id, first at {where}",
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                else:
                    out.write(
                        f"warning: {record.where()} (call {record.call_id}): call_id: duplicate, first at {where}\n"
                    )
            else:
                first_seen.setdefault(record.call_id, record.where())
    failed = bad > 0 or (strict and warned > 0)
    summary = f"{calls} calls: {calls - bad} valid, {bad} with errors, {warned} with warnings"
    if not as_json:
        out.write(("FAILED " if failed else "OK ") + summary + "\n")
    else:
        log.info(summary)
    raise typer.Exit(2 if failed else 0)


@app.command()
def convert(
    file: FileArg = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (.jsonl or .csv); '-' for stdout.")] = "-",
    to: Annotated[
        str | None, typer.Option("--to", help="Output format jsonl or csv; from the extension when omitted.")
    ] = None,
    fmt: FormatOpt = None,
    encoding: EncodingOpt = None,
    on_error: Annotated[
        str,
        typer.Option("--on-error", help="fail: stop at the first bad call, write nothing; skip: report it and go on."),
    ] = "fail",
) -> None:
    """Convert transcripts between formats (any input format → JSON Lines or per-turn CSV).

    With --on-error skip, each bad call is reported on stderr and, in JSON Lines output, gets a line
    {"call_id", "error", "source"} in its place, so the output keeps one line per input call.
    """
    if on_error not in ("fail", "skip"):
        raise InputError(f"--on-error must be fail or skip, got {on_error!r}")
    target = to or ("csv" if output.lower().endswith((".csv", ".tsv")) else "jsonl")
    if target not in ("jsonl", "csv"):
        raise InputError(f"--to must be jsonl or csv, got {target!r}")
    records = progress(iter_records(file, fmt=fmt, encoding=encoding), desc="convert", unit="call")
    written = skipped = 0
    writer: Any = JsonlWriter(output) if target == "jsonl" else None
    if writer is None:
        # Call-level columns come from the first valid call, so CSV output is streamed in one pass.
        records = iter(records)
        buffered = []
        for record in records:
            buffered.append(record)
            if record.ok:
                break
        first = next((r.transcript for r in buffered if r.ok), None)
        columns = [k for k, v in (first.extra.items() if first else []) if not isinstance(v, (dict, list))]
        writer = TranscriptCsvWriter(output, columns)
        records = _chain(buffered, records)
    with writer:
        for record in records:
            if record.ok:
                writer.write(record.transcript)
                written += 1
                continue
            if on_error == "fail":
                raise KefuError(record.describe())
            skipped += 1
            log.error("%s", record.describe())
            if target == "jsonl":
                writer.write(
                    {"call_id": record.call_id, "error": "; ".join(map(str, record.errors)), "source": record.where()}
                )
    log.info("converted %d calls, %d skipped", written, skipped)
    if skipped:
        typer.echo(f"{written} calls written, {skipped} bad calls skipped (see the errors above)", err=True)


def _chain(first: list[Any], rest: Any) -> Any:
    yield from first
    yield from rest


@app.command()
def info() -> None:
    """Show the version, the data home and where each store lives."""
    data = {"version": __version__, **get_settings().describe()}
    for key, value in data.items():
        typer.echo(f"{key:10} {value}")


def _register_groups() -> None:
    for name, module_name, attr, kind in GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # that package has no CLI yet
                continue
            raise
        target = getattr(module, attr)
        if kind == "group":
            app.add_typer(target, name=name)
        else:
            app.command(name=name)(target)


_register_groups()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; domain errors become one message on stderr and exit code 2."""
    try:
        app(args=argv, prog_name="kefu")
    except KefuError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C into a silent Exit(130)
            typer.echo("interrupted: outputs were left as they were before the job", err=True)
        raise
    except BrokenPipeError:  # e.g. `kefu convert ... | head`
        sys.stderr.close()
        sys.exit(0)
