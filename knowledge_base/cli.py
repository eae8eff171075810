"""`kefu kb`: import, curate, lint and export the scenario-script knowledge base."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kefu.io import InputError, JsonlWriter, KefuError
from kefu.settings import get_settings
from knowledge_base.search_cli import register as register_search

if TYPE_CHECKING:
    from knowledge_base.kb import IndexResult, KnowledgeBase
    from knowledge_base.schema import Script

app = typer.Typer(
    name="kb",
    help="The scenario-script knowledge base (场景话术库): import, curate, lint, export and search.\n\n"
    "Scripts live in DIR/kb.sqlite with every version kept; only approved scripts are suggested.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

KbOpt = Annotated[
    Path | None, typer.Option("--kb", help="Knowledge-base directory (default: $KEFU_HOME/kb).", show_default=False)
]
AuthorOpt = Annotated[
    str | None,
    typer.Option("--author", help="Who makes the change (default: $KEFU_USER, else the OS user).", show_default=False),
]
NoteOpt = Annotated[str, typer.Option("--note", "-m", help="Why: kept with the version and in the audit log.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
IdArg = Annotated[str, typer.Argument(help="Script id, e.g. K0001.")]


def _kb_dir(kb: Path | None) -> Path:
    return kb if kb is not None else get_settings().kb_dir


def _open(kb: Path | None, *, create: bool = False, use_index: bool = True) -> KnowledgeBase:
    from knowledge_base.kb import KnowledgeBase

    return KnowledgeBase.open(_kb_dir(kb), create=create, use_index=use_index)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


def _check_index(result: IndexResult | None) -> None:
    """An index that could not follow a committed change is an error the user must see (exit 2)."""
    if result is not None and result.state == "failed":
        raise KefuError(result.describe())


# -- import / export -------------------------------------------------------------------------------


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Scripts as .jsonl, .csv or .xlsx (columns as in the docs).")],
    kb: KbOpt = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Status for new scripts without a status column (default approved; 'draft' to review first). "
            "Also applied to changed scripts when given.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="jsonl, csv or xlsx; from the extension.")] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="CSV/JSONL text encoding; UTF-8 or GB18030 is detected.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and report what would change; write nothing.")
    ] = False,
    retire_missing: Annotated[
        bool, typer.Option("--retire-missing", help="Retire scripts that are not in the file (full sync).")
    ] = False,
    author: AuthorOpt = None,
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Create or update the knowledge base in DIR from FILE and make it searchable.

    Every row is checked first and every problem is reported with its line (Excel: row); if there
    is any, nothing is written. All changes go in one transaction. Unchanged rows create no new
    version, so importing the same file again changes nothing. Changed scripts keep their status
    unless the file has a status column or --status is given.
    """
    from knowledge_base.io import ScriptFileError, read_scripts
    from knowledge_base.kb import ImportReport
    from knowledge_base.schema import STATUSES
    from knowledge_base.store import DB_NAME

    if status is not None and status not in STATUSES:
        raise InputError(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
    new_kb = not (_kb_dir(kb) / DB_NAME).exists()
    try:
        if dry_run and new_kb:  # nothing to compare with: validate only, and leave no empty store behind
            rows = read_scripts(file, fmt=fmt, encoding=encoding)
            report = ImportReport(str(file), total=len(rows), created=[r.script.id for r in rows], dry_run=True)
            _echo_json(report.to_dict()) if as_json else typer.echo(report.summary())
            return
        with _open(kb, create=True) as base:
            report = base.import_file(
                file,
                fmt=fmt,
                encoding=encoding,
                status=status,
                author=author,
                note=note,
                dry_run=dry_run,
                retire_missing=retire_missing,
            )
            if not dry_run and report.changed == 0:
                report.index = base.sync_index()  # repairs an index left behind by an earlier failure
    except ScriptFileError as exc:
        for problem in exc.problems:
            if as_json:
                _echo_json({"severity": "error", **problem.to_dict()})
            else:
                typer.echo(f"error: {problem}", err=True)
        raise KefuError(f"{file}: {len(exc.problems)} problem(s) found; nothing was imported") from None
    if as_json:
        _echo_json(report.to_dict())
    else:
        typer.echo(report.summary())
    _check_index(report.index)


@app.command()
def export(
    output: Annotated[str, typer.Argument(help="Output file (.jsonl, .csv or .xlsx); '-' for JSON Lines on stdout.")],
    kb: KbOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="jsonl, csv or xlsx; from the extension.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only scripts with this status (repeatable).")
    ] = None,
    no_status: Annotated[bool, typer.Option("--no-status", help="Leave out the status column.")] = False,
) -> None:
    """Write the current scripts in the import format (files are replaced atomically)."""
    with _open(kb, use_index=False) as base:
        count = base.export(output, fmt=fmt, status=status or None, with_status=not no_status)
    if output != "-":
        typer.echo(f"exported {count} scripts to {output}", err=True)


# -- one script at a time --------------------------------------------------------------------------


def _load_object(path: Path) -> dict[str, Any]:
    """One script object from a .json file (or the first line of a .jsonl file)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) != 1:
            raise InputError(f"{path}: expected one JSON object (a script), found {len(lines)} lines") from None
        try:
            obj = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:1: invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _parse_sets(pairs: list[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE: extra fields; VALUE is JSON when it parses as JSON ([…], {…}, numbers), else text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value) if value.strip()[:1] in "[{" else value
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _next_id(ids: set[str]) -> str:
    """The next id in the knowledge base's own style (K0166 → K0167); K0001 for an empty one."""
    parsed = [m.groups() for i in ids if (m := re.fullmatch(r"([A-Za-z_-]*)(\d+)", i))]
    if not parsed:
        return "K0001"
    prefix = Counter(p for p, _ in parsed).most_common(1)[0][0]
    numbers = [(len(n), int(n)) for p, n in parsed if p == prefix]
    width = max(w for w, _ in numbers)
    candidate = max(n for _, n in numbers) + 1
    while f"{prefix}{candidate:0{width}d}" in ids:
        candidate += 1
    return f"{prefix}{candidate:0{width}d}"


@app.command()
def add(
    kb: KbOpt = None,
    script_id: Annotated[
        str | None, typer.Option("--id", help="Id of the new script (default: the next free one, e.g. K0167).")
    ] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Scenario name, e.g. 居民整户停电报修.")] = None,
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="A customer question (repeatable; at least one).")
    ] = None,
    script: Annotated[str | None, typer.Option("--script", help="The agent's standard reply.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Category, e.g. 故障报修.")] = None,
    keyword: Annotated[list[str] | None, typer.Option("--keyword", help="Keyword (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag, e.g. 敏感场景 (repeatable).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Extra field KEY=VALUE, e.g. work_order=故障报修工单 (JSON values allowed)."),
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", help="Take the fields from a JSON file; options override them.")
    ] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve right away (default: a draft).")] = False,
    author: AuthorOpt = None,
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Add one script, as a draft unless --approve (drafts are not suggested until approved)."""
    from knowledge_base.store.base import script_from_content

    content: dict[str, Any] = _load_object(from_file) if from_file else {}
    content.pop("status", None)
    given = {
        "id": script_id,
        "scenario": scenario,
        "questions": question,
        "script": script,
        "category": category,
        "keywords": keyword,
        "tags": tag,
    }
    content.update({k: v for k, v in given.items() if v is not None})
    content.update(_parse_sets(set_))
    with _open(kb, create=True) as base:
        if not content.get("id"):
            content["id"] = _next_id(base.store.ids())
        content.setdefault("questions", [])
        new = base.add(script_from_content(content, "draft", 1), approve=approve, author=author, note=note)
        if as_json:
            _echo_json(_script_json(base, new))
        else:
            typer.echo(f"added {new.id} v{new.version} ({new.status})")
        _check_index(base.last_index)


@app.command()
def edit(
    script_id: IdArg,
    kb: KbOpt = None,
    scenario: Annotated[str | None, typer.Option("--scenario", help="New scenario name.")] = None,
    category: Annotated[str | None, typer.Option("--category", help="New category.")] = None,
    script: Annotated[str | None, typer.Option("--script", help="New standard reply.")] = None,
    question: Annotated[
        list[str] | None, typer.Option("--question", "-q", help="Replace all questions (repeatable).")
    ] = None,
    add_question: Annotated[list[str] | None, typer.Option("--add-question", help="Add a question.")] = None,
    remove_question: Annotated[
        list[str] | None, typer.Option("--remove-question", help="Remove a question (exact text).")
    ] = None,
    keyword: Annotated[list[str] | None, typer.Option("--keyword", help="Replace all keywords (repeatable).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Replace all tags (repeatable).")] = None,
    add_tag: Annotated[list[str] | None, typer.Option("--add-tag", help="Add a tag.")] = None,
    remove_tag: Annotated[list[str] | None, typer.Option("--remove-tag", help="Remove a tag.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Set an extra field KEY=VALUE.")] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="Remove an extra field.")] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", help="Replace fields with those in a JSON file (options apply after).")
    ] = None,
    draft: Annotated[
        bool, typer.Option("--draft", help="Send the script back to draft (off the suggestions).")
    ] = False,
    author: AuthorOpt = None,
    note: NoteOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Change one script; the change becomes a new version (the old one stays in the history).

    The script keeps its status (an approved script stays live) unless --draft is given.
    """
    with _open(kb) as base:
        current = base.get(script_id)
        changes: dict[str, Any] = {}
        if from_file:
            loaded = _load_object(from_file)
            if loaded.get("id", script_id) != script_id:
                raise InputError(f"{from_file}: has id {loaded['id']!r}, not {script_id!r}")
            changes.update({k: v for k, v in loaded.items() if k not in ("id", "status", "version")})
        for key, value in (
            ("scenario", scenario),
            ("category", category),
            ("script", script),
            ("questions", question),
            ("keywords", keyword),
            ("tags", tag),
        ):
            if value is not None:
                changes[key] = value
        questions = list(changes.get("questions", current.questions))
        for q in remove_question or []:
            if q not in questions:
                raise InputError(f"{script_id} has no question {q!r}")
            questions.remove(q)
        questions += [q for q in add_question or [] if q not in questions]
        if add_question or remove_question:
            changes["questions"] = questions
        tags = list(changes.get("tags", current.tags))
        tags = [t for t in tags if t not in (remove_tag or [])] + [t for t in add_tag or [] if t not in tags]
        if add_tag or remove_tag:
            changes["tags"] = tags
        changes.update(_parse_sets(set_))
        for key in unset or []:
            if key not in current.extra:
                raise InputError(f"{script_id} has no extra field {key!r} (it has: {', '.join(current.extra) or '-'})")
            changes[key] = None
        if not changes and not draft:
            raise InputError("nothing to change: give --script, --question, --set, … (see --help)")
        updated = base.edit(script_id, changes, status="draft" if draft else None, author=author, note=note)
        if updated is None:
            typer.echo(f"{script_id}: no change (still v{current.version})", err=True)
        elif as_json:
            _echo_json(_script_json(base, updated))
        else:
            typer.echo(f"{script_id}: v{current.version} → v{updated.version} ({updated.status})")
        _check_index(base.last_index)


def _set_status(ids: list[str], kb: Path | None, status: str, author: str | None, note: str) -> None:
    with _open(kb) as base:
        changes = base.set_status(ids, status, author=author, note=note)
        changed = {c.id: c for c in changes}
        for script_id in dict.fromkeys(ids):
            if script_id in changed:
                c = changed[script_id]
                typer.echo(f"{script_id}: {c.old_status} → {c.new_status} (v{c.new_version})")
            else:
                typer.echo(f"{script_id}: already {status}", err=True)
        _check_index(base.last_index)


@app.command()
def approve(
    ids: Annotated[list[str], typer.Argument(help="Script ids.")],
    kb: KbOpt = None,
    author: AuthorOpt = None,
    note: NoteOpt = "",
) -> None:
    """Approve scripts: from now on they are suggested to agents (a new version each)."""
    _set_status(ids, kb, "approved", author, note)


@app.command()
def retire(
    ids: Annotated[list[str], typer.Argument(help="Script ids.")],
    kb: KbOpt = None,
    author: AuthorOpt = None,
    note: NoteOpt = "",
) -> None:
    """Retire scripts: no longer suggested, but kept with their whole history (approve brings them back)."""
    _set_status(ids, kb, "retired", author, note)


# -- reading ---------------------------------------------------------------------------------------


def _script_json(base: KnowledgeBase, script: Script) -> dict[str, Any]:
    info = base.store.info(script.id)
    out: dict[str, Any] = {**script.content(), "status": script.status, "version": script.version}
    if info is not None:
        out.update(
            created_at=info.created_at,
            created_by=info.created_by,
            updated_at=info.updated_at,
            updated_by=info.updated_by,
        )
    return out


@app.command()
def show(
    script_id: IdArg,
    kb: KbOpt = None,
    version: Annotated[int | None, typer.Option("--version", help="Show this old version instead.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one script: its current (or an old) version, status, author and times."""
    from knowledge_base.kb import render_version

    with _open(kb, use_index=False) as base:
        if version is not None:
            old = base.version(script_id, version)
            if as_json:
                _echo_json(old.to_dict())
                return
            typer.echo(f"{script_id}  v{old.version}  {old.status}  ({old.action} {old.time} by {old.author})")
            typer.echo("".join(render_version(old)), nl=False)
            return
        current = base.get(script_id)
        if as_json:
            _echo_json(_script_json(base, current))
            return
        info = base.store.info(script_id)
        latest = base.version(script_id, current.version)
        header = f"{script_id}  v{current.version}  {current.status}"
        if info is not None:
            header += (
                f"  (created {info.created_at} by {info.created_by}; "
                f"last changed {info.updated_at} by {info.updated_by})"
            )
        typer.echo(header)
        typer.echo("".join(render_version(latest)), nl=False)



@app.command()
def history(script_id: IdArg, kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Every version of a script: when, who, what changed and why (oldest first)."""
    with _open(kb, use_index=False) as base:
        versions = base.history(script_id)
    previous = None
    for v in versions:
        fields = v.changed_fields(previous)
        if as_json:
            _echo_json({**v.to_dict(), "changed": fields})
        else:
            what = f"  changed: {', '.join(fields)}" if fields else ""
            why = f"  — {v.note}" if v.note else ""
            typer.echo(f"v{v.version}  {v.time}  {v.author}  {v.action}  {v.status}{what}{why}")
        previous = v


@app.command()
def diff(
    script_id: IdArg,
    old: Annotated[int | None, typer.Argument(help="Older version (default: the one before NEW).")] = None,
    new: Annotated[int | None, typer.Argument(help="Newer version (default: the current one).")] = None,
    kb: KbOpt = None,
) -> None:
    """Show what changed between two versions of a script (default: its last change), as a unified diff."""
    with _open(kb, use_index=False) as base:
        text = base.diff(script_id, old, new)
    typer.echo(text or "(no difference)", nl=bool(not text))


@app.command("list")
def list_(
    kb: KbOpt = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Only this status (repeatable).")] = None,
    category: Annotated[str | None, typer.Option("--category", help="Only this category.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only scripts with this tag.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per script (JSON Lines).")] = False,
) -> None:
    """List scripts: id, status, version, category, scenario and number of questions."""
    with _open(kb, use_index=False) as base:
        scripts = base.list(status=status or None, category=category, tag=tag)
        for s in scripts:
            if as_json:
                _echo_json({**s.content(), "status": s.status, "version": s.version})
            else:
                n = len(s.questions)
                typer.echo(f"{s.id}\t{s.status}\tv{s.version}\t{s.category}\t{s.scenario}\t{n} questions")
    if not as_json:
        typer.echo(f"{len(scripts)} scripts", err=True)


@app.command()
def audit(
    script_id: Annotated[str | None, typer.Argument(help="Only this script's entries.")] = None,
    kb: KbOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many entries (newest first).")] = 50,
    since: Annotated[str | None, typer.Option("--since", help="Only entries from this ISO time on.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: who changed what, when (newest first)."""
    with _open(kb, use_index=False) as base:
        entries = base.store.audit(script_id, limit=limit, since=since)
    for e in entries:
        if as_json:
            _echo_json(e.to_dict())
        else:
            target = f"{e.script_id} v{e.version}" if e.script_id else "-"
            details = json.dumps(e.details, ensure_ascii=False) if e.details else ""
            typer.echo(f"{e.time}  {e.actor}  {e.action}  {target}  kb v{e.kb_version}  {details}")


@app.command()
def status(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Script counts, the store's kb version and whether the search index is up to date."""
    with _open(kb) as base:
        info = base.status()
    if as_json:
        _echo_json(info)
        return
    for key, value in info.items():
        if key != "index_info":
            typer.echo(f"{key:17} {value}")
    if info.get("index") in ("stale", "missing"):
        typer.echo("the index is behind the store: run `kefu kb reindex`", err=True)


@app.command()
def reindex(kb: KbOpt = None) -> None:
    """Rebuild the search index from the approved scripts (built aside, then swapped in)."""
    with _open(kb) as base:
        result = base.reindex()
    typer.echo(f"{result.describe()} (kb version {result.kb_version})")
    _check_index(result)
    if result.state == "unavailable":
        raise KefuError("no search index support is installed (knowledge_base.index)")


# -- curation ----------------------------------------------------------------------------------------


@app.command()
def lint(
    file: Annotated[
        Path | None, typer.Argument(help="Lint this script file instead of the knowledge base (before importing).")
    ] = None,
    kb: KbOpt = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Question similarity counted as near-duplicate (0–1).")
    ] = None,
    min_questions: Annotated[
        int | None, typer.Option("--min-questions", help="Fewer distinct questions than this are reported.")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="YAML rules instead of the bundled knowledge_base/data/lint.yaml.")
    ] = None,
    include_retired: Annotated[bool, typer.Option("--include-retired", help="Lint retired scripts too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per finding (JSON Lines).")] = False,
) -> None:
    """Find problems trainers should fix: near-duplicate questions in different scripts (they make
    ranking ambiguous), scripts with too few questions, time limits a script should state but does not.

    Exit code 0 when nothing (but info) is found, 1 when there are warnings or errors.
    """
    from knowledge_base.lint import LintConfig, lint_scripts

    config = LintConfig.load(rules)
    if file is not None:
        from knowledge_base.io import ScriptFileError, read_scripts

        try:
            scripts = [row.script for row in read_scripts(file)]
        except ScriptFileError as exc:
            for problem in exc.problems:
                typer.echo(f"error: {problem}", err=True)
            raise KefuError(f"{file}: {len(exc.problems)} problem(s) found; fix them first") from None
        scripts = [s for s in scripts if include_retired or s.status != "retired"]
    else:
        with _open(kb, use_index=False) as base:
            scripts = base.list(status=None if include_retired else ("draft", "approved"))
    issues = lint_scripts(scripts, config, threshold=threshold, min_questions=min_questions)
    for issue in issues:
        _echo_json(issue.to_dict()) if as_json else typer.echo(str(issue))
    counts = Counter(i.severity for i in issues)
    if not as_json:
        summary = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s]) or "no findings"
        typer.echo(f"{len(scripts)} scripts checked: {summary}", err=True)
    if counts["error"] or counts["warning"]:
        raise typer.Exit(1)


@app.command()
def gaps(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Texts to cluster (.jsonl with a text key, .csv with a text column, or .txt one per "
            "line); default: the gap log DIR/gaps.jsonl written by assist."
        ),
    ] = None,
    kb: KbOpt = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Cosine distance at which clusters stop merging (higher: broader).")
    ] = 0.8,
    min_count: Annotated[int, typer.Option("--min-count", help="Leave out clusters with fewer texts.")] = 1,
    examples: Annotated[int, typer.Option("--examples", help="Example texts per cluster.")] = 5,
    top: Annotated[int | None, typer.Option("--top", help="Only the largest N clusters.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only texts logged from this ISO date/time on.")] = None,
    max_score: Annotated[
        float | None, typer.Option("--max-score", help="Only texts whose best script scored below this.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the clusters as JSON Lines to this file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per cluster on stdout.")] = False,
) -> None:
    """Group customer texts that found no good script into topics, with counts and examples,
    so trainers see which scripts to write next (largest first)."""
    from knowledge_base.gaps import GAP_LOG, cluster_gaps, read_gap_texts

    source = file if file is not None else _kb_dir(kb) / GAP_LOG
    if file is None and not source.exists():
        raise KefuError(f"no gap log at {source}: assist writes it when no script fits; or give a file of texts")
    texts = read_gap_texts(source, since=since, max_score=max_score)
    if not texts:
        typer.echo(f"{source}: no texts to cluster", err=True)
        return
    clusters = cluster_gaps(texts, threshold=threshold, min_count=min_count, max_examples=examples)
    if top is not None:
        clusters = clusters[:top]
    if output is not None:
        with JsonlWriter(output) as writer:
            for c in clusters:
                writer.write(c.to_dict())
    for c in clusters:
        if as_json:
            _echo_json(c.to_dict())
        elif output is None:
            typer.echo(f"#{c.cluster}  {c.count} texts ({c.unique} distinct)  {' '.join(c.terms)}")
            for example in c.examples:
                typer.echo(f"    {example}")
    typer.echo(f"{len(texts)} texts → {len(clusters)} clusters", err=True)


# `kefu kb search` and `kefu kb embed` belong to the retrieval side.
register_search(app)
