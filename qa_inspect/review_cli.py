"""`kefu qa report` and `kefu qa review …`: the QA staff's report page and the human review workflow."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from kefu.io import InputError, JsonlWriter
from kefu.progress import state
from kefu.settings import get_settings

DbOpt = Annotated[str | None, typer.Option("--db", help="Review store (SQLite); default $KEFU_HOME/review.sqlite.")]
ReviewerOpt = Annotated[
    str | None, typer.Option("--reviewer", "-r", help="Who does this (default $KEFU_REVIEWER or the login name).")
]
NoMaskOpt = Annotated[
    bool,
    typer.Option("--no-mask", help="Show personal data unmasked (phones, IDs, 户号, addresses). Handle with care."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

_TRUE = {"true", "t", "1", "yes", "y", "对", "是", "正确", "确认"}
_FALSE = {"false", "f", "0", "no", "n", "错", "否", "误报", "错误"}


def _db(db: str | None) -> str:
    return db or str(get_settings().review_db)


def _who(reviewer: str | None) -> str:
    from qa_inspect.review.store import default_reviewer

    return reviewer or default_reviewer()


def _bool(value: str, what: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InputError(f"{what} must be true or false (or 1/0, 对/错), got {value!r}")


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=1, default=str))


def register(app: typer.Typer) -> None:
    """Add `report` and the `review` sub-group to the `kefu qa` app."""
    app.command("report")(report)
    review = typer.Typer(
        help="Human review (人工复核): load sampled calls, record verdicts, scores, appeals and decisions; "
        "calibrate rules; export training data.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    review.command("load")(load)
    review.command("queue")(queue)
    review.command("show")(show)
    review.command("verdict")(verdict)
    review.command("score")(score)
    review.command("label")(label)
    review.command("appeal")(appeal)
    review.command("decide")(decide)
    review.command("calibration")(calibration)
    review.command("export")(export)
    review.command("links")(links)
    review.command("audit")(audit)
    app.add_typer(review, name="review")


def report(
    file: Annotated[str, typer.Argument(help="A `kefu qa score` output (JSON Lines).")],
    output: Annotated[str | None, typer.Option("--output", "-o", help="The HTML report to write.")] = None,
    csv_path: Annotated[str | None, typer.Option("--csv", help="Also write the per-agent table as CSV.")] = None,
    xlsx_path: Annotated[str | None, typer.Option("--xlsx", help="Also write the per-agent table as Excel.")] = None,
    no_mask: NoMaskOpt = False,
    queue_size: Annotated[int, typer.Option("--queue-size", help="Most review-queue calls listed in the page.")] = 200,
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "95598 质检报告",
) -> None:
    """One self-contained HTML page (offline: inline CSS and SVG charts) over a score output.

    Score distribution, dimension subtotals, per-agent table (calls, mean score, taboo rate,
    complaint risk …), most frequent rule hits and taboo phrases, trends by day (when lines have a
    date), the review queue and the lines that could not be scored. Reads the file once, in
    bounded memory. Personal data is masked unless --no-mask.
    """
    from qa_inspect.report import build_report

    if output is None and csv_path is None and xlsx_path is None:
        raise InputError("nothing to write: give -o REPORT.html and/or --csv / --xlsx")
    data = build_report(
        file,
        output,
        csv_path=csv_path,
        xlsx_path=xlsx_path,
        mask=not no_mask,
        queue_size=queue_size,
        title=title,
        quiet=state.quiet or None,
    )
    if not state.quiet:
        typer.echo(
            f"{data.lines} lines: {data.scored} scored, {data.errors} errors, {len(data.agents)} agents, "
            f"{data.review_total} for review",
            err=True,
        )


def load(
    file: Annotated[str, typer.Argument(help="A `kefu qa score` output (JSON Lines).")],
    transcripts: Annotated[
        str | None, typer.Option("--transcripts", "-t", help="The scored transcripts, to show and export turns.")
    ] = None,
    all_calls: Annotated[
        bool, typer.Option("--all", help="Load every scored call, not only those picked for review.")
    ] = False,
    db: DbOpt = None,
    reviewer: ReviewerOpt = None,
) -> None:
    """Load the calls picked for review (review=true) into the review store. Safe to run again."""
    from qa_inspect.review.store import open_store

    with open_store(_db(db)) as store:
        summary = store.load(file, transcripts, all_calls=all_calls, actor=_who(reviewer))
    typer.echo(summary.describe(), err=True)


def queue(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, in_review, reviewed, appealed, decided or not_sampled "
                                                  "(loaded with every scored call, not picked by sampling).")
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's calls.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many calls.")] = 50,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Calls in the store, most urgent first (fatal, complaint risk, low score), with their review status."""
    from qa_inspect.review.store import open_store

    statuses = ("pending", "in_review", "reviewed", "appealed", "decided", "not_sampled")
    if status is not None and status not in statuses:
        raise InputError(f"--status must be one of {', '.join(statuses)}, got {status!r}")
    if limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    with open_store(_db(db), must_exist=True) as store:
        rows = store.queue(status=status, agent=agent, limit=limit)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no calls", err=True)
    for r in rows:
        fatal = " 致命" if r["fatal"] else ""
        typer.echo(
            f"{r['call_id']:20} {r['agent_id'] or '-':8} {r['date'] or '-':10} score {r['score']!s:>5} "
            f"risk {r['complaint_risk'] if r['complaint_risk'] is not None else '-'!s:>6}{fatal}  "
            f"hits {r['verdicts']}/{r['hits']} reviewed  [{r['status']}]  {','.join(r['review_reason'])}"
        )


def show(
    call_id: Annotated[str, typer.Argument(help="The call to show.")],
    db: DbOpt = None,
    no_mask: NoMaskOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """One call: turns (masked), its numbered hits with verdicts and linked scripts, scores, appeals."""
    from qa_inspect.privacy import ID_KEYS, Masker, get_masker
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        call = store.call(call_id)
    if not no_mask:
        call = Masker().mask_value(call, ID_KEYS | {"created_at", "loaded_at", "updated_at", "status", "kind", "hkey"})
    if as_json:
        _echo_json(call)
        return
    m = get_masker(False)  # already masked above when asked
    typer.echo(f"{call['call_id']}  坐席 {call['agent_id']}  {call['date'] or ''}  机器得分 {call['score']}  "
               f"{'致命 ' if call['fatal'] else ''}投诉风险 {call['complaint_risk']}  [{call['status']}]")  # fmt: skip
    by_turn: dict[int, list[str]] = {}
    for h in call["hits"]:
        if h["turn"] is not None:
            by_turn.setdefault(h["turn"], []).append(f"#{h['ordinal']}")
    if call["turns"]:
        for i, t in enumerate(call["turns"]):
            mark = f"  ← {' '.join(by_turn[i])}" if i in by_turn else ""
            role = "坐席" if t.get("role") == "agent" else "客户"
            typer.echo(f"  [{i}] {role}：{m(str(t.get('text', '')))}{mark}")
    else:
        typer.echo("  (no transcript: load with --transcripts FILE to see the turns)")
    typer.echo("命中：")
    for h in call["hits"]:
        v = {None: "未复核", True: "正确", False: "误报"}[h["verdict"]]
        where = f"turn {h['turn']}" if h["turn"] is not None else "整通"
        typer.echo(f"  #{h['ordinal']} {h['rule']} ({h['kind']}, {where}) {h['text']!r} → {v}")
        for link in h["links"]:
            typer.echo(f"      话术 {link['script_id']} {link['scenario']} ({link['score']}): {link['script'][:60]}")
    for s in call["manual_scores"]:
        typer.echo(f"人工评分 {s['score']} ({s['reviewer']}, {s['created_at']}) {s['note'] or ''}")
    for a in call["appeals"]:
        typer.echo(f"申诉 #{a['appeal_id']} [{a['status']}] {a['reason']} ({a['filed_by']})")
    for d in call["decisions"]:
        typer.echo(f"决定 {d['outcome']} 最终得分 {d['final_score']} ({d['reviewer']}) {d['note'] or ''}")


def verdict(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    hit: Annotated[str, typer.Argument(help="The hit: its number in `show` (e.g. 2) or its rule id when unique.")],
    value: Annotated[str, typer.Argument(help="true (the hit is right) or false (a false alarm).")],
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    db: DbOpt = None,
    reviewer: ReviewerOpt = None,
) -> None:
    """Record a verdict on one hit. The latest verdict counts; earlier ones stay in the history."""
    from qa_inspect.review.store import open_store

    correct = _bool(value, "the verdict")
    with open_store(_db(db), must_exist=True) as store:
        h = store.verdict(call_id, hit, correct, _who(reviewer), note)
    typer.echo(f"{call_id} #{h['ordinal']} {h['rule']}: {'true' if correct else 'false'}", err=True)


def score(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    value: Annotated[float, typer.Argument(help="The reviewer's score, 0-100.")],
    fatal: Annotated[
        bool | None, typer.Option("--fatal/--not-fatal", help="Whether the call fails a fatal item (一票否决).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Comment.")] = None,
    db: DbOpt = None,
    reviewer: ReviewerOpt = None,
) -> None:
    """Record the reviewer's manual score for a call (the latest counts)."""
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        store.manual_score(call_id, value, _who(reviewer), fatal=fatal, note=note)
    typer.echo(f"{call_id}: manual score {value:g}", err=True)


def label(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    turn: Annotated[int, typer.Argument(help="Turn number (0-based, as `show` lists them).")],
    name: Annotated[str, typer.Argument(help="taboo or empathy (agent turns), risk (customer turns).")],
    value: Annotated[str, typer.Argument(help="true/1 or false/0.")],
    db: DbOpt = None,
    reviewer: ReviewerOpt = None,
) -> None:
    """Label one turn for training directly (beyond the verdicts on hits), e.g. a taboo the rules missed."""
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        store.label_turn(call_id, turn, name, _bool(value, "the label value"), _who(reviewer))
    typer.echo(f"{call_id} turn {turn}: {name}={value}", err=True)


def appeal(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    reason: Annotated[str, typer.Option("--reason", help="The agent's reason for the appeal.")],
    db: DbOpt = None,
    reviewer: Annotated[str | None, typer.Option("--by", help="Who files it (default: the login name).")] = None,
) -> None:
    """File an agent's appeal (申诉) against a call's result; `decide` closes it."""
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        appeal_id = store.appeal(call_id, reason, _who(reviewer))
    typer.echo(f"{call_id}: appeal #{appeal_id} filed", err=True)


def decide(
    call_id: Annotated[str, typer.Argument(help="The call.")],
    outcome: Annotated[
        str, typer.Option("--outcome", help="upheld (result stands), overturned or adjusted (needs --score).")
    ] = "upheld",
    final_score: Annotated[
        float | None, typer.Option("--score", help="Final score (default: latest manual, else machine score).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Reasoning.")] = None,
    db: DbOpt = None,
    reviewer: ReviewerOpt = None,
) -> None:
    """Record the final decision on a call; open appeals are closed by it."""
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        d = store.decide(call_id, outcome, _who(reviewer), final_score=final_score, note=note)
    closed = f", appeal #{d['appeal_id']} closed" if d["appeal_id"] else ""
    typer.echo(f"{call_id}: {outcome}, final score {d['final_score']}{closed}", err=True)


def calibration(
    db: DbOpt = None,
    as_json: JsonOpt = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Also write the report as JSON here.")] = None,
) -> None:
    """Calibration report: per-rule precision (Wilson 95% interval) and human-vs-machine agreement."""
    from qa_inspect.report import write_text_atomic
    from qa_inspect.review.calibration import calibration as build
    from qa_inspect.review.calibration import format_calibration
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        result = build(store)
    if output:
        write_text_atomic(output, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    if as_json:
        _echo_json(result)
    else:
        typer.echo(format_calibration(result))


def export(
    output: Annotated[str, typer.Option("--output", "-o", help="JSON Lines for `kefu train fit --extra`; '-' stdout.")],
    no_mask: NoMaskOpt = False,
    negatives: Annotated[
        bool,
        typer.Option("--negatives", help="Also label the other agent turns of fully reviewed calls taboo=0."),
    ] = False,
    db: DbOpt = None,
) -> None:
    """Export reviewed turns as training data: {"call_id","turn","role","text","labels","source":"review"}."""
    from qa_inspect.review.export import export_training
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        summary = export_training(store, output, mask=not no_mask, negatives=negatives)
    typer.echo(summary.describe(), err=True)


def links(
    kb: Annotated[str, typer.Option("--kb", help="Knowledge-base directory (`kefu kb import … --kb DIR`).")],
    call_id: Annotated[str | None, typer.Option("--call", help="Only this call.")] = None,
    k: Annotated[int, typer.Option("-k", help="Scripts linked per hit.")] = 3,
    gaps: Annotated[
        str | None, typer.Option("--gaps", help="Write customer texts no script answers here (JSON Lines).")
    ] = None,
    gap_score: Annotated[
        float, typer.Option("--gap-score", help="Best-script score below which a text is a gap.")
    ] = 0.35,
    no_mask: NoMaskOpt = False,
    db: DbOpt = None,
) -> None:
    """Link each taboo and missing-script hit to the KB scripts that show the right answer (知质培闭环)."""
    from qa_inspect.privacy import get_masker
    from qa_inspect.review.links import link_hits, open_retriever
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        if call_id is not None:
            store.call(call_id)  # a clear error for an unknown call before opening the index
        retriever = open_retriever(kb)
        summary = link_hits(store, retriever, k=k, call_id=call_id, gap_score=gap_score)
    if gaps:
        m = get_masker(not no_mask)
        with JsonlWriter(gaps) as out:
            out.write_all({**g, "text": m(g["text"])} for g in summary.gaps)
    typer.echo(summary.describe(), err=True)


def audit(
    call_id: Annotated[str | None, typer.Option("--call", help="Only this call.")] = None,
    db: DbOpt = None,
) -> None:
    """The audit trail: who did what, when (JSON Lines)."""
    from qa_inspect.review.store import open_store

    with open_store(_db(db), must_exist=True) as store:
        for row in store.audit_log(call_id):
            typer.echo(json.dumps(row, ensure_ascii=False))
