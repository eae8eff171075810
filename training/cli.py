"""`kefu train`: generate data, fit, evaluate, export and pretrain the call classifier."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kefu.io import InputError
from kefu.progress import state
from kefu.settings import get_settings
from training.bootstrap import DEFAULT_RESAMPLES

if TYPE_CHECKING:
    from models.classifier_base import CallClassifier

log = logging.getLogger(__name__)

app = typer.Typer(
    help="Train the call classifier (taboo, empathy, complaint risk): data → fit → eval → export.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def default_data_dir() -> Path:
    return get_settings().home / "training_data"


def default_model_dir() -> Path:
    return get_settings().models_dir / "classifier"


DataOpt = Annotated[
    Path | None, typer.Option("--data", "-d", help="Generated data folder [default: $KEFU_HOME/training_data].")
]
ModelOpt = Annotated[
    Path | None, typer.Option("--model", "-m", help="Model folder [default: $KEFU_HOME/models/classifier].")
]
GoldOpt = Annotated[
    Path | None, typer.Option("--gold", help="Gold calls JSONL [default: training/data/gold_calls.jsonl].")
]
RuntimeOpt = Annotated[str, typer.Option("--runtime", help="auto (onnx when exported), onnx or torch.")]
NoStc3Opt = Annotated[bool, typer.Option("--no-stc3", help="Skip the STC-3 test split.")]
ResamplesOpt = Annotated[
    int, typer.Option("--resamples", help="Bootstrap resamples behind the 95 % intervals (0: no intervals).")
]


@app.command()
def data(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder [default: $KEFU_HOME/training_data].")
    ] = None,
    turns: Annotated[int, typer.Option("--turns", help="Training turns (val/test get a fifth to a quarter).")] = 36000,
    calls: Annotated[int, typer.Option("--calls", help="Training calls (val/test get a fifth to a quarter).")] = 3000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the pattern split and the samples.")] = 13,
    noise: Annotated[float, typer.Option("--noise", help="ASR noise level, 0 (clean) to 1 (heavy).")] = 0.5,
    train_only_share: Annotated[float, typer.Option(
        "--train-only-share",
        help="Share of each family's training picks drawn from the hand-written train-only patterns "
             "(patterns/train_only/, 3,078 lines by 23 more writers); 0, the default, leaves them out. "
             "Validation and test are the same either way (docs/classifier.md).")] = 0.0,
) -> None:
    """Generate labelled turns and calls from the pattern inventory, split by pattern into train/val/test.

    Writes turns_{train,val,test}.jsonl, calls_{train,val,test}.jsonl and manifest.json (pattern counts,
    the pattern → split assignment and a data hash).
    """
    from training.datasets import generate

    if not 0 <= noise <= 1:
        raise InputError(f"--noise must be between 0 and 1, got {noise}")
    out = out or default_data_dir()
    manifest = generate(out, n_turns=turns, n_calls=calls, seed=seed, noise=noise, quiet=state.quiet or None,
                        train_only_share=train_only_share)
    counts = {f: c["total"] for f, c in manifest["patterns"].items()}
    typer.echo(f"wrote {out} (data hash {manifest['data_hash']}; patterns per family {counts})")


@app.command()
def fit(
    data_dir: DataOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Model folder to write [default: $KEFU_HOME/models/classifier]."),
    ] = None,
    backend: Annotated[
        str,
        typer.Option("--backend", help="char_transformer (default) or tfidf (the baseline)."),
    ] = "char_transformer",
    base_model: Annotated[
        Path | None,
        typer.Option(
            "--base-model",
            help="Fine-tune this local Hugging Face checkpoint (e.g. a Chinese BERT, or `kefu train pretrain` "
            "output) instead of training from scratch.",
        ),
    ] = None,
    extra: Annotated[
        list[Path] | None,
        typer.Option(
            "--extra", metavar="FILE",
            help='Extra labelled turns JSONL, one {"role", "text", "labels": {...}} per line (e.g. verdicts '
            "reviewed by QA staff); repeatable.",
        ),
    ] = None,
    extra_weight: Annotated[
        int,
        typer.Option("--extra-weight", help="How many times each extra turn is repeated."),
    ] = 3,
    epochs: Annotated[
        float, typer.Option("--epochs", help="Passes over the training turns (the time budget may stop earlier).")
    ] = 3.0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Turns per step.")] = 64,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Learning rate [default: 1e-3 from scratch, 5e-5 for a base model]."),
    ] = None,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden size of the from-scratch encoder.")] = 128,
    layers: Annotated[int, typer.Option("--layers", help="Layers of the from-scratch encoder.")] = 2,
    no_stc3: Annotated[
        bool,
        typer.Option("--no-stc3", help="Do not use the STC-3 train split for the call head."),
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", help="CPU threads for torch; 0 = up to 2, fewer when the machine is busy.")
    ] = 0,
    time_budget: Annotated[float, typer.Option("--time-budget", help="Stop training after this many seconds.")] = 228.0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 13,
    ngram_dim: Annotated[
        int,
        typer.Option("--ngram-dim", help="Width of the transformer's character 1–3-gram branch (0 turns it off)."),
    ] = 32,
    ngram_vocab: Annotated[int, typer.Option("--ngram-vocab", help="Most frequent n-grams kept for it.")] = 50_000,
    turn_pooling: Annotated[
        str,
        typer.Option("--turn-pooling", help="How the transformer's turn outputs read a turn: mean_cls (one head over "
                     "the mean + [CLS] vector and the n-gram bag; best on the generated splits) or auto (a score per "
                     "character and n-gram, auto-pooled: a rude clause inside long procedure or before an apology "
                     "keeps its weight). See docs/classifier.md."),
    ] = "mean_cls",
    thresholds: Annotated[
        bool,
        typer.Option("--thresholds/--no-thresholds",
                     help="Choose a decision threshold per turn output on the validation split and the "
                          "hand-written threshold calls (+ the dev calls with --dev-use thresholds)."),
    ] = True,
    threshold_prior: Annotated[
        str,
        typer.Option("--threshold-prior",
                     help="Positive share the thresholds are chosen for: calls (that of the hand-written labelled "
                          "calls, as in real calls; validation negatives are reweighted) or validation (the "
                          "generated validation split's own). Both are saved; generated test sets are scored "
                          "at the validation ones."),
    ] = "calls",
    dev: Annotated[
        list[Path] | None,
        typer.Option("--dev", metavar="FILE", help="Hand-written dev calls JSONL, repeatable "
                     "[default: training/data/dev_calls.jsonl and dev2_calls.jsonl … dev9_calls.jsonl "
                     "when present]."),
    ] = None,
    no_dev: Annotated[bool, typer.Option("--no-dev", help="Use no hand-written dev calls.")] = False,
    threshold_calls: Annotated[
        list[Path] | None,
        typer.Option("--threshold-calls", metavar="FILE",
                     help="Hand-written labelled calls JSONL that only choose the decision thresholds "
                     "(never trained on), repeatable [default: training/data/threshold_calls.jsonl when present]."),
    ] = None,
    no_threshold_calls: Annotated[
        bool, typer.Option("--no-threshold-calls", help="Choose thresholds without hand-written threshold calls.")
    ] = False,
    dev_use: Annotated[
        str,
        typer.Option("--dev-use", help="What the dev calls do: train (their turns are training data, repeated "
                     "--dev-weight times), thresholds (they only choose the thresholds, with validation and the "
                     "threshold calls) or none."),
    ] = "train",
    dev_weight: Annotated[int, typer.Option("--dev-weight", help="Repeats of each dev turn with --dev-use train.")] = 5,
    call_text: Annotated[
        bool,
        typer.Option("--call-text/--no-call-text",
                     help="Also fit the whole-call text model (TF-IDF views of the call + ridge) that the "
                          "call aggregator reads."),
    ] = True,
    call_text_weight: Annotated[
        float,
        typer.Option("--call-text-weight", help="Weight of a labelled call (generated or dev) against an STC-3 "
                     "dialogue in the whole-call text model."),
    ] = 0.1,
    lexicon: Annotated[
        bool,
        typer.Option("--lexicon/--no-lexicon",
                     help="Also train on the QA taboo lexicon's phrases and the rule engine's example sentences "
                          "(qa_inspect/data), alone and inside plain agent turns."),
    ] = True,
    lexicon_weight: Annotated[int, typer.Option("--lexicon-weight", help="Repeats of each lexicon turn.")] = 2,
    contrast: Annotated[
        list[Path] | None,
        typer.Option("--contrast", metavar="FILE",
                     help="Hand-written contrast turns to train on (repeatable; JSONL like --extra) "
                          "[default: training/data/contrast_turns.jsonl]."),
    ] = None,
    no_contrast: Annotated[bool, typer.Option("--no-contrast", help="Train on no contrast turns.")] = False,
    contrast_weight: Annotated[
        int, typer.Option("--contrast-weight", help="Repeats of each contrast turn.")] = 3,
    taboo_windows: Annotated[
        bool,
        typer.Option("--taboo-windows/--no-taboo-windows",
                     help="Transformer: also read taboo in overlapping 30-character windows of agent turns of "
                          "60+ characters (a window must be surer than the whole turn), so a rude clause inside long "
                          "procedure is not diluted. See docs/classifier.md."),
    ] = True,
    label_smoothing: Annotated[
        float,
        typer.Option("--label-smoothing", min=0.0, max=0.99,
                     help="Transformer: train the outputs named by --label-smoothing-outputs towards ε/2 and 1−ε/2 "
                          "instead of 0 and 1 (0: off). See docs/classifier.md."),
    ] = 0.0,
    label_smoothing_outputs: Annotated[
        str, typer.Option("--label-smoothing-outputs", help="Comma-separated turn outputs to smooth.")] = "taboo",
    hidden_dropout: Annotated[
        float,
        typer.Option("--hidden-dropout", min=0.0, max=0.99,
                     help="Transformer trained from scratch: dropout on the encoder's hidden states. "
                          "See docs/classifier.md."),
    ] = 0.0,
) -> None:
    """Train the classifier on generated data (+ STC-3 train split, + extra turns), calibrate, save HF-style."""
    from training.fit import FitConfig
    from training.fit import fit as run_fit

    cfg = FitConfig(
        data_dir=data_dir or default_data_dir(),
        out=out or (default_model_dir() if backend != "tfidf" else get_settings().models_dir / "classifier-tfidf"),
        backend=backend,
        base_model=base_model,
        extra=list(extra or []),
        extra_weight=extra_weight,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        hidden=hidden,
        layers=layers,
        use_stc3=not no_stc3,
        threads=threads,
        time_budget_s=time_budget,
        seed=seed,
        quiet=state.quiet or None,
        ngram_dim=ngram_dim,
        ngram_vocab=ngram_vocab,
        turn_pooling=turn_pooling,
        thresholds=thresholds,
        dev_paths=[] if no_dev else (list(dev) if dev else None),
        threshold_paths=[] if no_threshold_calls else (list(threshold_calls) if threshold_calls else None),
        dev_use=dev_use,
        threshold_prior=threshold_prior,
        dev_weight=dev_weight,
        call_text=call_text,
        call_text_weight=call_text_weight,
        lexicon=lexicon,
        lexicon_weight=lexicon_weight,
        contrast_paths=[] if no_contrast else (list(contrast) if contrast else None),
        contrast_weight=contrast_weight,
        taboo_windows=taboo_windows,
        label_smoothing=label_smoothing,
        label_smoothing_outputs=tuple(h.strip() for h in label_smoothing_outputs.split(",") if h.strip()),
        hidden_dropout=hidden_dropout,
    )
    path = run_fit(cfg)
    typer.echo(f"saved {path}")


@app.command("eval")
def evaluate_cmd(
    model: ModelOpt = None,
    data_dir: DataOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder [default: MODEL/eval].")] = None,
    gold: GoldOpt = None,
    runtime: RuntimeOpt = "auto",
    no_stc3: NoStc3Opt = False,
    update_card: Annotated[
        bool,
        typer.Option("--update-card/--no-update-card", help="Write the numbers into the model card."),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full results as JSON.")] = False,
    resamples: ResamplesOpt = DEFAULT_RESAMPLES,
) -> None:
    """Precision/recall/F1 per label, confusion matrices, ROC AUC, PR curves (PNG) on the held-out sets.

    Sets: the pattern-disjoint synthetic test split, the hand-written gold calls, the STC-3 test split.
    Taboo is also reported separately for wording present in and absent from the taboo lexicon.
    Generated test turns are scored at the thresholds chosen for the generated data's share of positives
    (thresholds_generated), hand-written calls at the model's own (see kefu train fit --threshold-prior).
    F1 and AUC come with 95 % intervals from a cluster bootstrap: whole calls (hand-written sets, STC-3
    dialogues) or whole patterns (generated turns) are resampled, since turns of one call are not independent.
    """
    from training.evaluate import evaluate, headline

    _check_resamples(resamples, 0)
    model = model or default_model_dir()
    clf = _load(model, runtime)
    out = out or model / "eval"
    results = evaluate(clf, data_dir or default_data_dir(), out, gold=gold, stc3=not no_stc3, resamples=resamples)
    if update_card:
        meta_path = model / "kefu_classifier.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["evaluation"] = headline(results)
        meta["evaluation_runtime"] = clf.name
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        from models.classifier.card import write_card

        write_card(model, meta)
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=1))
        return
    typer.echo((out / "eval.md").read_text(encoding="utf-8"))


@app.command()
def compare(
    model_a: Annotated[Path, typer.Argument(help="Model A, the reference (e.g. the one in service).")],
    model_b: Annotated[Path, typer.Argument(help="Model B, the candidate (e.g. a retrain with QA verdicts).")],
    data_dir: DataOpt = None,
    gold: GoldOpt = None,
    runtime: RuntimeOpt = "auto",
    no_stc3: NoStc3Opt = False,
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap resamples behind the paired intervals (at least 1).")
    ] = DEFAULT_RESAMPLES,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Is B better than A? F1 and AUC of both on the same held-out sets, B − A with a paired 95 % interval.

    Both models score the same rows and are resampled together (whole calls or patterns). A difference whose
    interval excludes 0 is unlikely to be an accident of this sample (about one row in twenty reads so by chance);
    "no clear difference" means another sample of calls could reverse it. F1 is at each model's own thresholds.
    """
    from training.evaluate import compare as run_compare
    from training.evaluate import comparison_markdown

    _check_resamples(resamples, 1)
    clf_a, clf_b = _load(model_a, runtime), _load(model_b, runtime)
    rows = run_compare(clf_a, clf_b, data_dir or default_data_dir(), gold=gold, stc3=not no_stc3,
                       resamples=resamples)
    if not rows:
        raise InputError("no evaluation set was found: generate one with kefu train data, or pass --gold")
    typer.echo(json.dumps(rows, ensure_ascii=False, indent=1) if as_json
               else comparison_markdown(rows, str(model_a), str(model_b)))


def _load(model: Path, runtime: str) -> CallClassifier:
    """A saved classifier through the --runtime the user named (checked here, so the error names the option)."""
    from models.classifier import RUNTIMES, load_classifier

    if runtime not in RUNTIMES:
        raise InputError(f"--runtime must be one of {RUNTIMES}, got {runtime!r}")
    return load_classifier(model, runtime=runtime)  # type: ignore[arg-type]


def _check_resamples(value: int, minimum: int) -> None:
    if value < minimum:
        raise InputError(f"--resamples must be at least {minimum}, got {value}")


@app.command()
def export(
    model: ModelOpt = None,
    check: Annotated[
        Path | None,
        typer.Option("--check", help="Turns JSONL to compare onnx with torch on [default: the generated test split]."),
    ] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Largest allowed probability difference.")] = 0.01,
    data_dir: DataOpt = None,
) -> None:
    """Export to ONNX (fp32 and dynamic int8) inside MODEL/onnx and check agreement with torch."""
    from training.export import export_and_check

    model = model or default_model_dir()
    if check is None:
        candidate = (data_dir or default_data_dir()) / "turns_test.jsonl"
        check = candidate if candidate.exists() else None
    report = export_and_check(model, check, tolerance)
    typer.echo(json.dumps(report, indent=1))


@app.command()
def pretrain(
    inputs: Annotated[list[Path], typer.Argument(help="Unlabelled transcript files (any format kefu reads).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output folder [default: $KEFU_HOME/models/pretrained]."),
    ] = None,
    base: Annotated[Path | None, typer.Option("--base", help="Continue pretraining this char encoder folder.")] = None,
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the turns.")] = 1.0,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden size (new encoders).")] = 128,
    layers: Annotated[int, typer.Option("--layers", help="Layers (new encoders).")] = 2,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch.")] = 1,
    time_budget: Annotated[float, typer.Option("--time-budget", help="Stop after this many seconds.")] = 600.0,
) -> None:
    """Masked-language-model pretraining on your own unlabelled transcripts.

    The result loads with BertForMaskedLM and is used by `kefu train fit --base-model OUT`.
    """
    from training.pretrain import pretrain as run_pretrain

    for p in inputs:
        if not p.exists():
            raise InputError(f"{p}: no such file")
    path = run_pretrain(inputs, out or get_settings().models_dir / "pretrained", base=base, epochs=epochs,
                        hidden=hidden, layers=layers, threads=threads, time_budget_s=time_budget,
                        quiet=state.quiet or None)
    typer.echo(f"saved {path}")
