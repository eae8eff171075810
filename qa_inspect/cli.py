"""`kefu qa`: score calls against a scorecard, sample them for review, list rules, check one text."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer

from kefu.io import FORMATS, InputError, KefuError, Record, detect_format, iter_records, repair_partial_tail
from kefu.progress import progress, state

log = logging.getLogger(__name__)

app = typer.Typer(
    help="Quality inspection (质检): scorecards, rules, bulk scoring and sampling for human review.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ScorecardOpt = Annotated[
    str | None, typer.Option("--scorecard", "-s", help="Scorecard YAML (default: the bundled 95598 scorecard).")
]
PolicyOpt = Annotated[str | None, typer.Option("--policy", help="Sampling policy YAML (default: built-in policy).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed for sampling (deterministic).")]
TopOpt = Annotated[float | None, typer.Option("--top-percent", help="Review the top N% of calls by complaint risk.")]
RiskOpt = Annotated[
    float | None, typer.Option("--risk-threshold", help="Review every call with complaint_risk >= this (0-1).")
]
QuotaOpt = Annotated[int | None, typer.Option("--per-agent", help="At least K random calls per agent per period.")]
PeriodOpt = Annotated[str | None, typer.Option("--period", help="Quota period: day, week, month or all.")]
BaselineOpt = Annotated[float | None, typer.Option("--baseline", help="Random baseline: review p% of all calls.")]

PARTIAL_SUFFIX = ".partial"
# Error lines are {"call_id": …, "error": …}: recognised without parsing the line.
_ERROR_LINE = re.compile(r'^\{"call_id":(?:"(?:[^"\\]|\\.)*"|null|-?\d+),"error":')


def _policy(path: str | None, **overrides: Any) -> Any:
    from qa_inspect.sampling import SamplingPolicy

    return SamplingPolicy.load(path).with_overrides(**overrides)


def _count_input(file: str | None, fmt: str | None) -> int | None:
    """Number of calls in a JSON Lines file (non-empty lines), for the progress bar's ETA."""
    if file in (None, "-", "") or not Path(file).is_file():
        return None
    if (fmt or Path(file).suffix.lower().lstrip(".")) not in ("jsonl", "ndjson", "json"):
        return None
    n = 0
    with open(file, "rb") as fh:
        for line in fh:
            n += bool(line.strip())
    return n


def _last_call_id(path: Path) -> tuple[int, Any]:
    """(complete lines, call_id of the last one) of a partial output."""
    n, last = 0, None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                n += 1
                last = line
    call_id = None
    if last is not None:
        try:
            call_id = json.loads(last).get("call_id")
        except json.JSONDecodeError:
            raise InputError(f"{path}:{n}: not a JSON line; delete the file or run without --resume") from None
    return n, call_id


def _raw_jsonl(file: str | None, fmt: str | None) -> Path | None:
    """The input path when it is a JSON Lines file (read as raw lines and parsed in the workers)."""
    if file in (None, "-", ""):
        return None
    path = Path(file)
    if (fmt or detect_format(path)) != "jsonl":
        return None
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    return path


def _nth_call_id(path: Path, n: int) -> tuple[Any] | None:
    """(call_id,) of the n-th call (non-empty line) of a JSON Lines file; None when it has fewer."""
    seen = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                seen += 1
                if seen == n:
                    try:
                        obj = json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        return (None,)
                    return (obj.get("call_id") if isinstance(obj, dict) else None,)
    return None


def _check_resume(found: tuple[Any] | None, expect_id: Any, done: int, partial: Path | None) -> None:
    """The partial output must end where this input's first `done` calls end."""
    if found is None or (found[0] is not None and expect_id is not None and str(found[0]) != str(expect_id)):
        got = "fewer calls" if found is None else f"call {found[0]} there"
        raise KefuError(
            f"--resume: {partial} has {done} lines ending with call {expect_id}, but the input has {got}; "
            "it belongs to another input: delete it or run without --resume"
        )


@app.command()
def score(
    file: Annotated[
        str | None, typer.Argument(help="Transcripts (.jsonl/.csv/.tsv/.parquet/.txt); stdin when '-'.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Output JSON Lines file; '-' for stdout.")] = "-",
    scorecard: ScorecardOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Classifier directory (default: $KEFU_HOME/models/classifier if it exists)."
        ),
    ] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Rules only, even when a classifier exists.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", "-w", help="Worker processes (default 1; 0 = all cores). Ray: actors (default: cluster CPUs)."
        ),
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="local (processes on this machine) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (ray engine; default: start a local one).")
    ] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Calls per task sent to a worker.")] = 64,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted job: skip calls already in the output.")
    ] = False,
    sample: Annotated[
        bool, typer.Option("--sample/--no-sample", help="Run the sampling pass (review, review_reason) at the end.")
    ] = True,
    policy: PolicyOpt = None,
    seed: SeedOpt = None,
    top_percent: TopOpt = None,
    risk_threshold: RiskOpt = None,
    per_agent: QuotaOpt = None,
    period: PeriodOpt = None,
    baseline: BaselineOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help=f"Input format ({'/'.join(FORMATS)}).")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Input encoding (UTF-8/GB18030 detected).")] = None,
) -> None:
    """Score every call against the scorecard: one output line per input call, in input order.

    Each line has call_id, score (0-100), fatal, fatal_items, dimensions (subtotals), deductions,
    complaint_risk (0-1), empathy (0-1, higher is better), taboo, rule_hits (with evidence),
    needs_review, scorer, review and review_reason, plus every input key except turns. A call that
    cannot be scored gets {"call_id", "error"}.

    scorer is "model" when a classifier is loaded (--model DIR, or $KEFU_HOME/models/classifier),
    otherwise "rules": complaint_risk and empathy are then rules-based estimates from the bundled
    phrase lists and taboo lexicon (see docs/quality_inspection.md), and model rules are skipped.

    Output to a file is written to OUT.partial as it goes (so --resume can continue after a crash or
    Ctrl-C) and becomes OUT after the sampling pass; an earlier OUT stays intact until then.
    """
    from qa_inspect.engine import ENGINES, LineWriter, ScoreJob, chunked, make_engine
    from qa_inspect.engine.base import raw_chunks
    from qa_inspect.sampling import immediate_reasons, sample_file, set_review
    from qa_inspect.scorecard import load_scorecard
    from qa_inspect.scoring import resolve_model_dir

    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 0:
        raise InputError(f"--workers must be >= 0, got {workers}")
    if chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {chunk_size}")
    if address and engine != "ray":
        raise InputError("--address needs --engine ray")
    cores = os.cpu_count() or 1
    # local: 1 process unless asked; ray: one actor per cluster CPU unless asked (0 = all cores either way)
    n_workers = (workers or cores) if workers is not None else (1 if engine == "local" else None)
    sc = load_scorecard(scorecard)  # validate here: a bad scorecard fails before any work starts
    samp = _policy(
        policy,
        seed=seed,
        top_percent=top_percent,
        risk_threshold=risk_threshold,
        per_agent=per_agent,
        period=period,
        baseline_percent=baseline,
    )
    model_dir = resolve_model_dir(model, not no_model)
    log.info(
        "scorecard %s (%d items); scorer %s", sc.path, len(sc.items), f"model {model_dir}" if model_dir else "rules"
    )
    job = ScoreJob(
        scorecard=sc.path,
        model_dir=str(model_dir) if model_dir else None,
        chunk_size=chunk_size,
        torch_threads=max(1, cores // (n_workers or cores)),
    )
    runner = make_engine(engine, job, n_workers, address)
    total = _count_input(file, fmt)
    raw_path = _raw_jsonl(file, fmt)
    started = time.perf_counter()
    written = errors = 0

    def chunks(skip: int = 0, expect_id: Any = None, partial: Path | None = None) -> Iterator[Any]:
        if raw_path is not None:
            if skip:
                _check_resume(_nth_call_id(raw_path, skip), expect_id, skip, partial)
            # JSON Lines: the workers decode and validate, this process only splits lines.
            return raw_chunks(raw_path, chunk_size, encoding, skip)
        records: Iterator[Record] = iter(iter_records(file, fmt=fmt, encoding=encoding))
        if skip:
            skipped = deque(islice(records, skip), maxlen=1)  # only the last skipped call is checked
            found = (skipped[0].call_id,) if len(skipped) == 1 else None
            _check_resume(found, expect_id, skip, partial)
        return chunked(records, chunk_size)

    if output in ("-", ""):
        if resume:
            raise InputError("--resume needs an output file (-o OUT.jsonl)")
        with LineWriter(None) as out:
            for n, line in enumerate(progress(runner.run(chunks()), desc="score", unit="call", total=total), start=1):
                obj = json.loads(line)
                errors += "error" in obj
                # Ranking (top N%, per-agent quotas) needs the whole output: only per-call reasons here.
                out.write_line(set_review(line, obj, immediate_reasons(obj, n, samp) if sample else []))
                written += 1
        _summary(written, errors, started)
        return

    out_path = Path(output)
    partial = out_path.with_name(out_path.name + PARTIAL_SUFFIX)
    done, last_id = 0, None
    if resume:
        if not partial.exists() and out_path.exists():
            shutil.copyfile(out_path, partial)  # a finished output: continue from it (e.g. the input grew)
        if partial.exists():
            repair_partial_tail(partial)
            done, last_id = _last_call_id(partial)
            log.info("--resume: %d calls already scored in %s", done, partial)
    elif partial.exists():
        log.warning("%s exists from an interrupted job; starting over (use --resume to continue it)", partial)
        partial.unlink()
    work = chunks(done, last_id, partial)
    with LineWriter(partial, mode="append", flush_every=32) as out:
        remaining = None if total is None else max(0, total - done)
        for line in progress(runner.run(work), desc="score", unit="call", total=remaining):
            out.write_line(line)
            written += 1
            errors += bool(_ERROR_LINE.match(line))
    _summary(written, errors, started, done)
    if sample:
        summary = sample_file(partial, samp, out_path, quiet=state.quiet)
        partial.unlink()
        if not state.quiet:
            typer.echo(f"review: {summary.describe()}", err=True)
    else:
        os.replace(partial, out_path)


def _summary(written: int, errors: int, started: float, done: int = 0) -> None:
    elapsed = time.perf_counter() - started
    rate = written / elapsed if elapsed > 0 else 0.0
    resumed = f" (+{done} from before)" if done else ""
    msg = f"scored {written} calls{resumed}, {errors} errors, in {elapsed:.1f}s ({rate:.0f} calls/s)"
    log.info(msg)
    if not state.quiet:
        typer.echo(msg, err=True)


@app.command("sample")
def sample_cmd(
    file: Annotated[str, typer.Argument(help="A `kefu qa score` output (JSON Lines).")],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of rewriting FILE in place.")
    ] = None,
    policy: PolicyOpt = None,
    seed: SeedOpt = None,
    top_percent: TopOpt = None,
    risk_threshold: RiskOpt = None,
    per_agent: QuotaOpt = None,
    period: PeriodOpt = None,
    baseline: BaselineOpt = None,
    show_policy: Annotated[bool, typer.Option("--show-policy", help="Print the policy in effect and exit.")] = False,
) -> None:
    """Pick calls for human review (质检抽样) and set review / review_reason on every line.

    Policy: every fatal call; every call with a needs-review item; complaint_risk >= threshold;
    the top N% by complaint_risk; at least K random calls per agent per period; a random baseline
    of p%. Deterministic under --seed. FILE is rewritten atomically (or -o OUT is written).
    `kefu qa score` runs this automatically at the end.
    """
    from qa_inspect.sampling import sample_file

    samp = _policy(
        policy,
        seed=seed,
        top_percent=top_percent,
        risk_threshold=risk_threshold,
        per_agent=per_agent,
        period=period,
        baseline_percent=baseline,
    )
    if show_policy:
        typer.echo(json.dumps(samp.to_dict(), ensure_ascii=False, indent=2))
        return
    summary = sample_file(file, samp, output, quiet=state.quiet)
    typer.echo(summary.describe(), err=True)


@app.command()
def rules(
    item: Annotated[str | None, typer.Argument(help="Explain one item (by id) instead of listing all.")] = None,
    scorecard: ScorecardOpt = None,
    types: Annotated[bool, typer.Option("--types", help="List the rule types and their YAML fields.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the scorecard's items (or explain one), or the rule types a scorecard may use.

    Loading the scorecard also validates it: an error names the file, the item and the field.
    """
    from qa_inspect.rules import REGISTRY
    from qa_inspect.scorecard import load_scorecard

    if types:
        rows = [{"type": k, "summary": s, "fields": list(f)} for k, (_, f, s) in sorted(REGISTRY.items())]
        if as_json:
            typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        for r in rows:
            typer.echo(f"{r['type']:16} {r['summary']}\n{'':16} fields: {', '.join(r['fields']) or '-'}")
        return
    sc = load_scorecard(scorecard)
    if item is not None:
        try:
            it = sc.item(item)
        except KeyError:
            raise InputError(f"no item {item!r} in {sc.path}; items: {', '.join(i.id for i in sc.items)}") from None
        data = {
            "id": it.id,
            "name": it.name,
            "dimension": it.dimension,
            "deduction": it.deduction,
            "per_hit": it.per_hit,
            "max_deduction": it.max_deduction,
            "fatal": it.fatal,
            "needs_review": it.needs_review,
            "description": it.description,
            "fires_when": getattr(it.rule, "describe", lambda: it.rule.type)(),
            "rule": it.raw_rule,
        }
        if as_json:
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        else:
            for k, v in data.items():
                typer.echo(f"{k:13} {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}")
        return
    if as_json:
        rows = [
            {
                "id": i.id,
                "name": i.name,
                "dimension": i.dimension,
                "deduction": i.deduction,
                "fatal": i.fatal,
                "needs_review": i.needs_review,
                "rule": i.rule.type,
            }
            for i in sc.items
        ]
        typer.echo(
            json.dumps({"scorecard": sc.name, "version": sc.version, "items": rows}, ensure_ascii=False, indent=2)
        )
        return
    typer.echo(f"{sc.name} {sc.version} ({sc.path})")
    for key, dim in sc.dimensions.items():
        typer.echo(
            f"\n[{key}] {dim.name}: {dim.points:g} points" + (f" (SERVQUAL {dim.servqual})" if dim.servqual else "")
        )
        for i in (i for i in sc.items if i.dimension == key):
            flags = "".join([" FATAL" if i.fatal else "", " review" if i.needs_review else ""])
            per = (
                f" per hit, max {i.max_deduction:g}"
                if i.per_hit and i.max_deduction is not None
                else (" per hit" if i.per_hit else "")
            )
            typer.echo(f"  {i.id:28} -{i.deduction:g}{per}{flags}  {i.name}")


@app.command()
def check(
    text: Annotated[str, typer.Argument(help="The sentence to check; '-' reads lines from stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input line.")] = False,
) -> None:
    """Check one agent sentence against the taboo lexicon (服务忌语) and its exceptions.

    Shows every phrase found, its category and severity, and hits cancelled by a polite-use
    exception (with the exception id). Handy for QA staff checking a wording.
    """
    import sys

    from qa_inspect.lexicon import SEVERITIES, get_resources

    matcher = get_resources().taboo
    lines = [line.rstrip("\n") for line in sys.stdin] if text == "-" else [text]
    for line in lines:
        hits = matcher.match(line)
        if as_json:
            typer.echo(
                json.dumps(
                    {"text": line, "taboo": any(h.active for h in hits), "hits": [h.to_dict() for h in hits]},
                    ensure_ascii=False,
                )
            )
            continue
        active = [h for h in hits if h.active]
        verdict = "TABOO" if active else "ok"
        typer.echo(f"{verdict}: {line}")
        for h in hits:
            status = f"cancelled by {h.cancelled_by}" if h.cancelled_by else SEVERITIES[h.entry.severity]
            typer.echo(
                f"  [{h.start}:{h.end}] {h.text!r} → {h.entry.id} {h.entry.phrase} ({h.entry.category}, "
                f"severity {h.entry.severity}): {status}"
            )


# Reports and the review store live in their own module; they add `report` and `review` here.
from qa_inspect.review_cli import register as _register_review  # noqa: E402

_register_review(app)
