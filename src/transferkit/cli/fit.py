"""``transferkit fit DATA --backbone SPEC --strategy S --out DIR``: train, evaluate on a held-out split, bundle."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.fit import DEFAULT_BACKBONE, FitConfig, fit_bundle
from ..strategies import STRATEGIES
from ._common import (
    add_backbone_options,
    add_bundle_options,
    add_runtime_options,
    add_text_options,
    backbone_options,
    emit,
    fraction,
    positive_int,
    print_warnings,
    random_seed,
    split_fraction,
)
from ._train_options import add_train_options, train_overrides


def register(sub: Any) -> None:
    p = sub.add_parser("fit", help="train on labelled images, texts or audio and write a bundle",
                       description="Train on DATA, evaluate on a stratified validation split, write a bundle.")
    p.add_argument("data", help="folder of <class>/<image>, a path,label CSV, 'embedded' or 'fashion-mnist[:split]'; "
                                "texts: a text,label CSV, TSV or JSONL")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"backbone spec (default: {DEFAULT_BACKBONE})")
    p.add_argument("--strategy", default="feature-extraction",
                   help=f"one of: {', '.join(STRATEGIES)}, or auto (chooses from the labels per class and how far "
                        f"the data is from the source, and says why)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--head", default="logistic", help="feature-extraction head: logistic, linear, mlp, svm, "
                   "random-forest, gradient-boosting")
    p.add_argument("--layer", default=None, help="feature layer (see `transferkit backbones --show SPEC`)")
    p.add_argument("--per-class", type=positive_int, default=None, help="at most N images per class (few-shot)")
    p.add_argument("--val-fraction", type=split_fraction, default=0.2, help="validation split (default 0.2)")
    p.add_argument("--seed", type=random_seed, default=0)
    p.add_argument("--random-init", action="store_true", help="the backbone's architecture without pretrained weights")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (fine-tune, scratch)")
    p.add_argument("--image-size", type=positive_int, default=None, help="square input size (fine-tune, scratch)")
    p.add_argument("--max-bad", type=fraction, default=0.1, help="fail when more than this fraction is unreadable")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--classes", default=None, help="keep only these classes: names or indices, e.g. 0-4 or Bag,Coat")
    b = p.add_argument_group("transfer verdict (against a model trained from scratch on the same data)")
    b.add_argument("--no-baseline", action="store_true", help="skip the scratch baseline and the verdict")
    b.add_argument("--baseline", dest="baseline_model", choices=["auto", "small-cnn", "tfidf", "arch"],
                   default="auto", help="what transfer is judged against: auto (a small CNN at the images' own size; "
                   "TF-IDF + logistic regression for texts; the architecture for audio), or arch: the transfer "
                   "model's architecture from random init")
    b.add_argument("--verdict-protocol", choices=["auto", "holdout", "cross-fit"], default="auto",
                   help="auto: cross-fit both models over every labelled item (5 folds) when the validation split "
                   "holds fewer than 100, else score both on it")
    b.add_argument("--baseline-seeds", type=positive_int, default=1,
                   help="retrain both models with N seeds; the interval is then over seeds (default 1: bootstrap "
                        "over validation images)")
    b.add_argument("--baseline-epochs", type=positive_int, default=None,
                   help="epochs of the baseline (default: the small CNN's enough for ~300 steps; arch: 15)")
    b.add_argument("--baseline-image-size", type=positive_int, default=None,
                   help="--baseline arch: its input size (default: the transfer model's)")
    m = p.add_argument_group("several tasks (label columns) at once")
    m.add_argument("--targets", type=column_list, default=None, metavar="COL,COL",
                   help="label columns of a CSV (images: with a path column; texts: a text column; or a TSV/JSONL), "
                        "one task each: one shared backbone, one head per task; an empty cell is no label for "
                        "that task. No scratch baseline or verdict")
    m.add_argument("--task-weighting", choices=["equal", "uncertainty"], default="equal",
                   help="fine-tune: sum of the task losses (equal), or weighed by learned log-variances "
                        "(uncertainty, Kendall et al. 2018)")
    m.add_argument("--compare-single-task", action="store_true",
                   help="also train one single-task model per task with the same settings and split, and report "
                        "each task against it (one more fit per task)")
    add_train_options(p)
    add_text_options(p)
    add_backbone_options(p)
    z = p.add_argument_group("text: zero-shot and parameter-efficient fine-tuning")
    z.add_argument("--labels", default=None, help="zero-shot: class names, comma-separated; 'name: description' "
                   "embeds the description (DATA, if labeled, is only evaluated; its classes must be among these)")
    z.add_argument("--template", default="{}", help="zero-shot: text each label goes into, e.g. 'This text is about {}.'")
    z.add_argument("--temperature", type=float, default=None,
                   help="zero-shot: softmax temperature over cosine similarities (default 0.05)")
    z.add_argument("--peft", choices=["lora", "prompt-tuning"], default=None,
                   help="fine-tune: train adapters instead of the encoder weights (hf:/packaged transformers)")
    z.add_argument("--lora-rank", type=positive_int, default=None, help="--peft lora: rank of the adapters (default 8)")
    z.add_argument("--prompt-tokens", type=positive_int, default=None, metavar="N",
                   help="--peft prompt-tuning: virtual tokens before every text (default 20)")
    z.add_argument("--prompt-init", default=None, metavar="TEXT",
                   help="--peft prompt-tuning: start the prompt from this text's token embeddings (default: "
                        "sampled vocabulary tokens)")
    add_bundle_options(p)
    p.add_argument("--commercial", action="store_true",
                   help="the model is for commercial use: refuse backbones whose licence is non-commercial or unknown")
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = FitConfig(
        data=args.data, out=args.out, backbone=args.backbone, strategy=args.strategy, head=args.head, layer=args.layer,
        per_class=args.per_class, val_fraction=args.val_fraction, seed=args.seed, random_init=args.random_init,
        epochs=args.epochs, image_size=args.image_size, device=args.device, batch_size=args.batch_size,
        num_workers=args.num_workers, max_bad_fraction=args.max_bad, cache=not args.no_cache,
        progress=not args.no_progress, classes=args.classes, resume=args.resume,
        train=train_overrides(args, args.strategy), baseline=not args.no_baseline,
        baseline_model=args.baseline_model, verdict_protocol=args.verdict_protocol,
        baseline_seeds=args.baseline_seeds, baseline_epochs=args.baseline_epochs,
        baseline_image_size=args.baseline_image_size, text_column=args.text_column, label_column=args.label_column,
        encoding=args.encoding, labels=args.labels, template=args.template, temperature=args.temperature,
        peft=args.peft, lora_rank=args.lora_rank, prompt_tokens=args.prompt_tokens, prompt_init=args.prompt_init,
        backbone_options=backbone_options(args),
        training_items=not args.no_training_items, commercial=args.commercial, targets=args.targets,
        task_weighting=args.task_weighting,
        compare_single_task=args.compare_single_task,
    )
    result = fit_bundle(cfg)
    emit(args, result, render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    table = Table(title="transferkit fit", show_header=False)
    for key in ("strategy", "backbone", "layer", "licence", "train_images", "val_images"):
        table.add_row(key, str(r[key]))
    if r["accuracy"] is None:
        table.add_row("accuracy (val)", "n/a (DATA has no labels)")
    else:
        mean = ", mean over tasks" if r.get("tasks") else ""
        table.add_row(f"accuracy (val{mean})", f"{r['accuracy']:.4f}")
        table.add_row(f"macro-F1 (val{mean})", f"{r['macro_f1']:.4f}")
    if r.get("labels"):
        table.add_row("labels (zero-shot)", ", ".join(r["labels"]))
    table.add_row("seconds", f"{r['seconds']:.1f}")
    table.add_row("bundle", r["bundle"])
    if not r.get("tasks"):
        table.add_row("confusion matrix", str(r["confusion_png"]))
    if r.get("inputs"):
        table.add_row("inputs", ", ".join(f"{k} {v}" for k, v in r["inputs"].items()))
    if r.get("duplicates") and r["duplicates"]["duplicates"]:
        table.add_row("duplicate texts", f"{r['duplicates']['duplicates']} ({r['duplicates']['conflicting']} with "
                                         "another label; kept)")
    if "training_curves_png" in r:
        table.add_row("training curves", r["training_curves_png"])
        table.add_row("plan", " → ".join(f"{s['name']} ({s['epochs']})" for s in r["plan"]))
    if "reuse_as" in r:
        table.add_row("reuse as backbone", r["reuse_as"])
    if r.get("tasks"):
        table.add_row("tasks", ", ".join(r["tasks"]) + (f" (weighting: {r['task_weighting']})"
                                                       if r.get("task_weighting") else ""))
    console.print(table)
    if r.get("tasks"):
        render_tasks(console, r)
    if r.get("auto"):
        console.print("[bold]auto:[/bold] " + " ".join(r["auto"]["reasons"]), highlight=False)
    render_verdict(console, r.get("verdict"))
    print_warnings(console, r.get("warnings", []))
    if r["skipped"]:
        console.print(f"[yellow]{len(r['skipped'])} unreadable input(s) skipped:[/yellow]")
        for s in r["skipped"][:20]:
            console.print(f"  {s['input']}: {s['reason']}", highlight=False)
        if len(r["skipped"]) > 20:
            console.print(f"  ... and {len(r['skipped']) - 20} more (all listed in the bundle's transferkit.json)")


def render_tasks(console: Console, r: dict[str, Any]) -> None:
    """One row per task: its scores, and against the single-task model of the same budget when one was trained."""
    table = Table(title="per task (validation items labelled for it)")
    compared = r.get("single_task") is not None
    columns = ["task", "classes", "train / val", "accuracy", "macro-F1", *(["weight"] if r.get("task_weighting")
                                                                            == "uncertainty" else []),
               *(["single-task", "gain (95% CI)"] if compared else [])]
    for column in columns:
        table.add_column(column)
    for task, t in r["per_task"].items():
        row = [task, str(len(t["classes"])), f"{t['train_items']} / {t['val_items']}", _score(t["accuracy"]),
               _score(t["macro_f1"])]
        if "weight" in columns:
            row.append(f"{t['task_weight']['weight']:.3f}" if t.get("task_weight") else "-")
        single = t.get("single_task")
        if compared and single:
            ci = single["ci"]
            interval = f" ({100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})" if ci else ""
            row += [_score(single["accuracy"]), f"{100 * single['gain']:+.1f} pts{interval}"]
        table.add_row(*row)
    console.print(table)
    if compared:
        s = r["single_task"]
        console.print(f"single-task models: {s['seconds']:.1f} s in all (multi-task model {s['multi_task_seconds']:.1f} "
                      f"s); {s['budget']}", highlight=False)
    pngs = [t["confusion_png"] for t in r["per_task"].values() if t.get("confusion_png")]
    if pngs:
        console.print(f"confusion matrices: {', '.join(pngs)}", highlight=False)
    console.print(f"[dim]note: {r['verdict_note']}[/dim]", highlight=False)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def column_list(text: str) -> list[str]:
    """An argparse type: comma-separated column names."""
    return [c.strip() for c in text.split(",") if c.strip()]


VERDICT_STYLE = {"positive": "bold green", "neutral": "bold yellow", "negative": "bold white on red"}


def render_verdict(console: Console, verdict: dict[str, Any] | None) -> None:
    """The transfer verdict, loud when transfer hurt, with what to try instead."""
    if not verdict:
        return
    from ..verdict import Verdict

    v = Verdict(**{k: verdict[k] for k in Verdict.__dataclass_fields__ if k in verdict})  # older bundles lack some
    style = VERDICT_STYLE.get(v.verdict, "bold")
    console.print(f"[{style}]{'NEGATIVE TRANSFER — ' if v.verdict == 'negative' else ''}{v.summary()}[/{style}]",
                  highlight=False)
    for tip in v.advice:
        console.print(f"  • {tip}", highlight=False)
