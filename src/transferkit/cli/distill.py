"""``transferkit distill TEACHER DATA --student SPEC --out DIR``: a smaller student from a bundle's soft targets
(the job: :func:`transferkit.jobs.distill.distill`)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..jobs.distill import DistillConfig, distill
from ._common import (
    add_runtime_options,
    add_text_options,
    emit,
    fraction,
    positive_float,
    positive_int,
    print_warnings,
    random_seed,
    split_fraction,
)


def register(sub: Any) -> None:
    p = sub.add_parser("distill", help="distil a bundle into a smaller student (soft targets, Hinton et al. 2015)",
                       description="Train a smaller STUDENT on the soft targets of TEACHER_BUNDLE over DATA's labelled "
                                   "items and --unlabeled ones; compare it with the teacher and with the same student "
                                   "trained on the labels alone; write the student as a bundle.")
    p.add_argument("teacher", metavar="TEACHER_BUNDLE", help="the teacher: a bundle directory")
    p.add_argument("data", help="labelled data of the teacher's classes (folder, CSV, text table, built-in name)")
    p.add_argument("--student", required=True,
                   help="student backbone spec: small-cnn (a small CNN at the images' own size), timm:/torchvision:/"
                        "packaged: image backbones, packaged:glove-6b-50d or vectors:<file> or hf:<model> for texts")
    p.add_argument("--out", required=True, help="directory for the student's bundle and distill.json")
    p.add_argument("--unlabeled", default=None, metavar="DIR|CSV",
                   help="more items for the teacher's soft targets (a flat folder of images, a .txt of texts, or "
                        "data whose labels are not read)")
    p.add_argument("--test", default=None, metavar="DATA",
                   help="labelled data to score teacher and students on (default: a held-out split of DATA)")
    p.add_argument("--temperature", type=positive_float, default=4.0, help="temperature of the soft targets (4)")
    p.add_argument("--alpha", type=fraction, default=0.7,
                   help="weight of the soft targets; 1 - alpha weighs the hard labels (default 0.7)")
    p.add_argument("--epochs", type=positive_int, default=10, help="student training epochs (default 10)")
    p.add_argument("--lr", type=positive_float, default=3e-3, help="learning rate (default 3e-3)")
    p.add_argument("--val-fraction", type=split_fraction, default=0.2,
                   help="share of DATA held out for scoring without --test (default 0.2)")
    p.add_argument("--max-unlabeled", type=positive_int, default=None, metavar="N",
                   help="use at most N --unlabeled items (a seeded sample)")
    p.add_argument("--restrict-vocabulary", action="store_true",
                   help="word-vector students: keep only the words of the training texts (labelled and unlabelled), "
                        "so GloVe's 400k-word table shrinks to the task's vocabulary")
    p.add_argument("--commercial", action="store_true",
                   help="the student is for commercial use: refuse a teacher or student whose licence chain is "
                        "non-commercial or unknown")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads for the run (default: torch's own; 1 is much faster on a busy machine)")
    p.add_argument("--seed", type=random_seed, default=0)
    add_text_options(p)
    add_runtime_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = DistillConfig(teacher=args.teacher, data=args.data, out=args.out, student=args.student,
                        unlabeled=args.unlabeled, test=args.test, temperature=args.temperature, alpha=args.alpha,
                        epochs=args.epochs, lr=args.lr, val_fraction=args.val_fraction,
                        max_unlabeled=args.max_unlabeled, restrict_vocabulary=args.restrict_vocabulary,
                        commercial=args.commercial, text_column=args.text_column,
                        label_column=args.label_column, encoding=args.encoding, device=args.device,
                        batch_size=args.batch_size or 64, num_workers=args.num_workers, seed=args.seed,
                        threads=args.threads, progress=not args.no_progress)
    emit(args, distill(cfg), render)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['student']}[/bold] distilled from {r['teacher']['bundle']} "
                  f"({r['teacher']['strategy']}, {r['teacher']['backbone']}) on {r['labelled_items']} labelled + "
                  f"{r['unlabelled_items']} unlabelled items, T={r['temperature']:g}, alpha={r['alpha']:g}; scored on "
                  f"{r['test_items']} items ({r['test']})", highlight=False)
    table = Table()
    for col in ("model", "accuracy", "agreement with teacher", "parameters", "CPU latency, batch 1"):
        table.add_column(col)
    names = {"teacher": "teacher", "student": "student (distilled)", "labels_only": "student, labels only"}
    for key, label in names.items():
        m = r["models"][key]
        table.add_row(label, f"{m['accuracy']:.3f}", f"{m['agreement_with_teacher']:.3f}", f"{m['parameters']:,}",
                      f"{m['latency_ms']:.1f} ms")
    console.print(table)
    console.print(f"keeps {r['kept_of_teacher']:.1%} of the teacher's accuracy with {r['parameter_ratio']:.1%} of its "
                  f"parameters; {r['gain_over_labels_only']:+.3f} over labels only. bundle: {r['bundle']} "
                  f"(licence {r['licence']})", highlight=False)
    print_warnings(console, r["warnings"])
