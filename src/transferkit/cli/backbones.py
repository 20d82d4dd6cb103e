"""``transferkit backbones``: what is known, what works offline right now, and each licence."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from ..backbones.licences import LicenceSource, commercial_status
from ..jobs.backbones import BackbonesConfig, describe_backbones


def register(sub: Any) -> None:
    p = sub.add_parser("backbones", help="list backbones, licences and offline availability")
    p.add_argument("--show", metavar="SPEC", default=None, help="describe one backbone: layers, groups, preprocessing")
    p.add_argument("--random-init", action="store_true", help="with --show: describe the architecture only (offline)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = describe_backbones(BackbonesConfig(show=args.show, random_init=args.random_init))
    if args.json:
        import json
        import sys

        sys.stdout.write(json.dumps(result, default=str) + "\n")
    elif args.show:
        render_one(Console(), result["backbone"])
    else:
        render(Console(), result)
    return 0


def render(console: Console, r: dict[str, Any]) -> None:
    table = Table(title="backbones")
    for col in ("spec", "offline now", "licence (SPDX)", "commercial use", "note"):
        table.add_column(col, overflow="fold")
    for row in r["backbones"]:
        table.add_row(row["spec"], "[green]yes[/green]" if row["offline"] else "no", row["licence"],
                      COMMERCIAL_STYLE.get(row["commercial"], row["commercial"]), row["note"])
    console.print(table)
    console.print("Describe one: transferkit backbones --show packaged:efficientnet_lite0 (a bundle's: its licence "
                  "chain)")


COMMERCIAL_STYLE = {"yes": "[green]yes[/green]", "no": "[red]no[/red]", "unknown": "[yellow]unknown[/yellow]"}


def render_one(console: Console, b: dict[str, Any]) -> None:
    console.print(f"[bold]{b['spec']}[/bold] (architecture {b['arch_spec']}), {b['num_features']} features")
    w = b["weights"]
    console.print(f"weights: {w['origin']} | licence {w['licence']} | task {w['source_task'] or '-'} | "
                  f"sha256 {w['checksum'][:16]}…", highlight=False)
    for entry in b.get("licence_chain", []):
        source = LicenceSource.from_dict(entry)
        status = commercial_status(source.licence)
        console.print(f"licence chain: {source.describe()} — commercial use {COMMERCIAL_STYLE[status]}"
                      f"{f' ({source.note})' if source.note else ''}", highlight=False)
    p = b["preprocessing"]
    if "input_size" in p:
        console.print(f"preprocessing: input {tuple(p['input_size'])}, mean {tuple(p['mean'])}, std {tuple(p['std'])}, "
                      f"{p['interpolation']}, crop {p['crop_pct']:.3f}", highlight=False)
    else:  # text and audio: their own fields (tokenizer, pooling; sample rate, max seconds, ...)
        console.print("preprocessing: " + ", ".join(f"{k} {v}" for k, v in p.items() if v not in ("", None)),
                      highlight=False)
    console.print("layers: " + ", ".join(f"{k} ({v})" for k, v in b["layers"].items()), highlight=False)
    console.print("groups (input → output): " + ", ".join(b["groups"]), highlight=False)
