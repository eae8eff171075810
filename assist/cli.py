"""`kefu serve` (the live assist service) and `kefu assist …` (replay transcripts, feedback report)."""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kefu.io import InputError, KefuError

log = logging.getLogger(__name__)

app = typer.Typer(
    name="assist",
    help="Live agent assist: replay transcripts through the engine, feedback reports.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

KbOpt = Annotated[Path | None, typer.Option("--kb", help="Knowledge-base directory (default $KEFU_HOME/kb).")]
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="Classifier directory (default $KEFU_HOME/models/classifier when it exists); "
                                 "without one, taboo comes from the lexicon and risk from the complaint-trigger "
                                 "phrases. Live use wants a fast one (TF-IDF or ONNX int8)."),
]
NoModelOpt = Annotated[bool, typer.Option("--no-model", help="Run without a classifier even if one is there.")]


def _model_dir(model: Path | None, no_model: bool) -> Path | None:
    from kefu.settings import get_settings

    if no_model:
        return None
    if model is not None:
        if not model.exists():
            raise InputError(f"--model {model}: no such directory")
        return model
    default = get_settings().models_dir / "classifier"
    return default if default.exists() else None


def serve(
    kb: KbOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes. With more than one, call state and alerts are "
                                            "shared through SQLite files under $KEFU_HOME/assist (see "
                                            "docs/assist.md for many hosts).")
    ] = 1,
    model: ModelOpt = None,
    no_model: NoModelOpt = False,
    keys: Annotated[
        Path | None, typer.Option("--keys", help="API keys file (JSON); without keys (and no KEFU_API_KEYS) "
                                                 "auth is off: local demo only.")
    ] = None,
    feedback_db: Annotated[
        Path | None, typer.Option("--feedback-db", help="Feedback SQLite file (default $KEFU_HOME/assist/"
                                                        "feedback.sqlite).")
    ] = None,
    alerts_db: Annotated[
        Path | None, typer.Option("--alerts-db", help="Shared SQLite alert bus, so the supervisors' stream of "
                                                      "every worker sees every alert (default with --workers > 1).")
    ] = None,
    session_db: Annotated[
        Path | None, typer.Option("--session-db", help="Share call state between workers through this SQLite file "
                                                       "(default with --workers > 1).")
    ] = None,
    max_sessions: Annotated[int, typer.Option("--max-sessions", help="Live calls per process; the oldest idle "
                                                                     "is evicted beyond it.")] = 10_000,
    session_ttl: Annotated[float, typer.Option("--session-ttl", help="Seconds idle before a call expires.")] = 1800.0,
    reload_interval: Annotated[
        float, typer.Option("--reload-interval", help="Seconds between checks for a new index (0: off).")
    ] = 2.0,
    k: Annotated[int, typer.Option("-k", help="Suggestions per customer turn.")] = 3,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Confidence threshold (calibrated 0–1); default: the index's calibrated threshold, "
        "else 0.35.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "warning",
) -> None:
    """Run the live assist service and the web console (console at /console/, OpenAPI docs at /docs, health at
    /healthz)."""
    import uvicorn

    from assist.service.settings import ServiceSettings
    from kefu.settings import get_settings

    if workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if not 0 < port < 65536:
        raise InputError(f"--port must be 1–65535, got {port}")
    home = get_settings()
    kb_dir = kb or home.kb_dir
    if not kb_dir.exists():
        log.warning("knowledge base %s does not exist yet: no suggestions until `kefu kb import` creates it", kb_dir)
    if workers > 1:
        alerts_db = alerts_db or home.home / "assist" / "alerts.sqlite"
        session_db = session_db or home.home / "assist" / "sessions.sqlite"
    settings = ServiceSettings(
        kb_dir=kb_dir, model_dir=_model_dir(model, no_model),
        feedback_db=feedback_db or home.home / "assist" / "feedback.sqlite",
        keys_file=keys, alerts_db=alerts_db, session_db=session_db, max_sessions=max_sessions,
        review_db=home.review_db, jobs_dir=home.jobs_dir,
        session_ttl_s=session_ttl,
        reload_interval_s=reload_interval,
        engine=_engine_config(k, min_score),
    )
    os.environ.update(settings.to_env())  # workers re-create the app from the environment
    ws_max = 4 * settings.max_body_bytes  # uvicorn drops bigger WebSocket frames; the route answers 413 below it
    if workers == 1:
        from assist.service.app import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False,
                    ws_max_size=ws_max)
    else:
        uvicorn.run("assist.service.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False, ws_max_size=ws_max)


def _engine_config(k: int, min_score: float | None) -> Any:
    from assist.engine import EngineConfig

    if min_score is None:
        return EngineConfig(k=k)
    return EngineConfig(k=k, min_score=min_score, follow_index_threshold=False,
                        confident_score=max(EngineConfig().confident_score, min_score))


def _known_scenario(extra: dict[str, Any]) -> tuple[str | None, str | None]:
    """The transcript's labelled script id and/or scenario name, if it has one."""
    labels = extra.get("labels") if isinstance(extra.get("labels"), dict) else {}
    sid = extra.get("script_id") or labels.get("script_id")
    scenario = extra.get("scenario") or labels.get("scenario")
    return (str(sid) if sid else None), (str(scenario) if scenario else None)


@app.command()
def replay(
    file: Annotated[str, typer.Argument(help="Transcripts (.jsonl, .csv, .parquet, .txt); '-' for stdin.")],
    kb: KbOpt = None,
    model: ModelOpt = None,
    no_model: NoModelOpt = False,
    k: Annotated[int, typer.Option("-k", help="Suggestions per customer turn.")] = 3,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Confidence threshold; default: the index's calibrated threshold, else 0.35.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per turn instead of text.")] = False,
    summary_only: Annotated[bool, typer.Option("--summary", help="Only the summary table.")] = False,
    within: Annotated[int, typer.Option("--within", help="Customer turns within which the right script must "
                                                         "appear (for transcripts with a known scenario).")] = 2,
) -> None:
    """Feed transcripts turn by turn through the engine; print what the agent would have seen and the latency.

    For transcripts with a known scenario (a `scenario` or `script_id` key, or the same inside `labels`) it
    reports how often the right script appeared within the first WITHIN customer turns.
    """
    from assist.factory import build_engine
    from assist.service.reload import KbIndexSource
    from assist.sessions import CallSession
    from kefu.io import iter_records
    from kefu.settings import get_settings

    kb_dir = kb or get_settings().kb_dir
    config = _engine_config(k, min_score)
    engine = build_engine(kb_dir=kb_dir, model_dir=_model_dir(model, no_model), config=config, log_gaps=False)
    source = KbIndexSource(kb_dir)
    version = source.version()
    if version is None:
        raise KefuError(f"{kb_dir}: no search index; run `kefu kb import FILE --kb {kb_dir}` first")
    engine.set_retriever(source.load(), version)
    out = sys.stdout
    latencies: list[float] = []
    calls = labelled = found = bad = 0
    alerts: dict[str, int] = {}
    for record in iter_records(file):
        if not record.ok or record.transcript is None:
            bad += 1
            typer.echo(f"error: {record.describe()}", err=True)
            continue
        t = record.transcript
        calls += 1
        want_id, want_scenario = _known_scenario(t.extra)
        session = CallSession(t.call_id)
        customer_turns = 0
        hit_early = False
        if not as_json and not summary_only:
            out.write(f"=== call {t.call_id}" + (f" (scenario: {want_scenario or want_id})" if want_id or
                                                    want_scenario else "") + "\n")
        for turn in t.turns:
            start = time.perf_counter()
            result = engine.process(session, turn.role, turn.text)
            ms = (time.perf_counter() - start) * 1000.0
            latencies.append(ms)
            if turn.role == "customer":
                customer_turns += 1
                if customer_turns <= within and any(
                    (want_id and s.id == want_id) or (want_scenario and s.scenario == want_scenario)
                    for s in result.suggestions
                ):
                    hit_early = True
            for a in result.alerts:
                alerts[a.type] = alerts.get(a.type, 0) + 1
            if as_json:
                out.write(json.dumps({**result.to_dict(), "text": turn.text, "wall_ms": round(ms, 3)},
                                     ensure_ascii=False) + "\n")
            elif not summary_only:
                who = "坐席" if turn.role == "agent" else "客户"
                out.write(f"[{result.turn:>2}] {who}：{turn.text}   ({ms:.1f} ms)\n")
                for s in result.suggestions:
                    mark = " ✓confident" if s.confident else ""
                    out.write(f"      → {s.id} {s.scenario} ({s.score:.2f}{mark}, {s.reason})"
                              f"{' [' + ' '.join(s.matched_terms) + ']' if s.matched_terms else ''}\n")
                for a in result.alerts:
                    out.write(f"      ! {a.type}: {a.message}\n")
                if result.used_script:
                    out.write(f"      = used {result.used_script['id']} ({result.used_script['overlap']:.2f})\n")
                if result.gap:
                    out.write("      ? knowledge gap (no script above the threshold)\n")
        if want_id or want_scenario:
            labelled += 1
            found += hit_early
    if not as_json:
        lat = sorted(latencies)
        p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: 0.0)
        out.write(f"\n{calls} calls, {len(latencies)} turns, {bad} unreadable\n")
        if lat:
            out.write(f"latency per turn: median {statistics.median(lat):.2f} ms, p95 {p(0.95):.2f} ms, "
                      f"p99 {p(0.99):.2f} ms, max {lat[-1]:.2f} ms\n")
        if alerts:
            out.write("alerts: " + ", ".join(f"{k} {v}" for k, v in sorted(alerts.items())) + "\n")
        if labelled:
            out.write(f"right script within the first {within} customer turns: {found}/{labelled} "
                      f"({found / labelled:.1%})\n")
        else:
            out.write("no transcript has a known scenario (scenario / script_id key): no hit rate\n")
    if bad and not calls:
        raise typer.Exit(2)


@app.command("feedback")
def feedback_report(
    db: Annotated[Path | None, typer.Option("--db", help="Feedback SQLite file (default $KEFU_HOME/assist/"
                                                         "feedback.sqlite).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per script.")] = False,
    top: Annotated[int, typer.Option("--top", help="Rows to print (0: all).")] = 30,
) -> None:
    """Report suggestion feedback per script for trainers: shown, accepted, dismissed, used, rates, adjustment."""
    from assist.feedback import FeedbackStore
    from kefu.settings import get_settings

    path = db or get_settings().home / "assist" / "feedback.sqlite"
    if not path.exists():
        raise InputError(f"{path}: no feedback database (the service creates it)")
    store = FeedbackStore(path)
    try:
        rows = store.report()
    finally:
        store.close()
    rows = rows[:top] if top else rows
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    typer.echo(f"{'script':10} {'shown':>6} {'accept':>6} {'dismiss':>7} {'used':>5} {'acc%':>6} {'adj':>6}  scenario")
    for r in rows:
        acc = "" if r["acceptance_rate"] is None else f"{r['acceptance_rate']:.0%}"
        typer.echo(f"{r['script_id']:10} {r['shown']:>6} {r['accepted']:>6} {r['dismissed']:>7} {r['used']:>5} "
                   f"{acc:>6} {r['adjustment']:>+6.2f}  {r['scenario']}")
