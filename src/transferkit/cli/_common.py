"""Options and printing shared by the commands."""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console

from .._errors import spell_parameters

#: the flag of a parameter whose flag has another name, when the command has no flag of the parameter's own name
FLAG_ALIASES = {"max_bad_fraction": "max_bad", "backbone": "arch", "run_dir": "out", "num_tokens": "prompt_tokens",
                "init_text": "prompt_init", "layer": "layers"}
#: the switch of a boolean parameter that the flag turns the other way: ``pretrained=False`` is ``--random-init``
NEGATED_FLAGS = {"pretrained": "random_init"}


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="images per batch")
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="DataLoader worker processes for decoding")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress stays on stderr)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_text_options(p: argparse.ArgumentParser) -> None:
    """How text data files (CSV/TSV/JSONL with a text column) are read."""
    g = p.add_argument_group("text data")
    g.add_argument("--text-column", default="text", help="column (JSON key) holding the text (default: text)")
    g.add_argument("--label-column", default="label", help="column (JSON key) holding the label (default: label)")
    g.add_argument("--encoding", default="utf-8", help="encoding of text files (default: utf-8; e.g. latin-1)")


def add_backbone_options(p: argparse.ArgumentParser) -> None:
    """How a text backbone turns a text into one vector; given to ``create_backbone`` (refused by others)."""
    g = p.add_argument_group("text backbones")
    g.add_argument("--pooling", choices=["mean", "cls", "max", "sif"], default=None,
                   help="token vectors -> one vector: mean, cls or max (transformers; default: the model's, else "
                        "mean), mean or sif (word vectors; default mean)")
    g.add_argument("--max-length", type=positive_int, default=None, metavar="TOKENS",
                   help="transformers: tokens kept per text (default 128, or the model's limit when smaller)")


def add_bundle_options(p: argparse.ArgumentParser) -> None:
    """What a command that writes a bundle may leave out of it."""
    p.add_argument("--no-training-items", action="store_true",
                   help="leave the training images' content digests out of the bundle (membership privacy); later "
                        "runs then cannot warn when the model meets its own training images")


def backbone_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backbone options the command line gave (``create_backbone`` keyword arguments)."""
    return {k: v for k, v in {"pooling": args.pooling, "max_length": args.max_length}.items() if v is not None}


def flag_spelling(parser: argparse.ArgumentParser) -> Callable[[str, str | None], str | None]:
    """How ``parser``'s command spells a parameter an error message names (:mod:`transferkit._errors`).

    ``image_size`` is ``--image-size``, ``baseline_model='arch'`` is ``--baseline arch`` (the flag whose ``dest``
    is the parameter), ``baseline=False`` is ``--no-baseline``, a training setting ``lr_head`` is ``--lr``
    (``dest`` ``train_lr_head``), ``max_bad_fraction`` is ``--max-bad`` (:data:`FLAG_ALIASES`),
    ``pretrained=False`` is ``--random-init`` (:data:`NEGATED_FLAGS`) and ``data`` is ``DATA``. A parameter the
    command has no flag for keeps its Python spelling (the function returns None).
    """
    actions = {action.dest: action for action in parser._actions}

    def spell(name: str, value: str | None) -> str | None:
        negated = NEGATED_FLAGS.get(name, "") in actions
        dests = (NEGATED_FLAGS[name],) if negated else (name, f"no_{name}", f"train_{name}", FLAG_ALIASES.get(name, ""))
        action = next((actions[d] for d in dests if d in actions), None)
        if action is None:
            return None
        if not action.option_strings:  # a positional argument
            return str(action.metavar or action.dest.upper())
        flag = max(action.option_strings, key=len)
        if value is None:
            return flag
        try:
            literal = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            literal = value
        if action.nargs == 0:  # a switch: --no-baseline is baseline=False, --random-init random_init=True
            sets = literal is (not action.dest.startswith("no_"))
            return flag if sets != negated else f"without {flag}"
        return f"{flag} {shlex.quote(str(literal))}"

    return spell


def error_line(error: Exception, args: argparse.Namespace) -> str:
    """The one line the CLI prints for ``error``: the parameters it names spelled as this command's flags."""
    spell = getattr(args, "spell_parameter", None)
    message = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else None
    if spell is None or message is None:
        return str(error)
    return spell_parameters(message, spell)


def emit(args: argparse.Namespace, result: dict[str, Any], render: Callable[[Console, dict[str, Any]], None]) -> None:
    if "rank" in result:  # a non-zero rank of a distributed run: rank 0 reports
        return
    if args.json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        render(Console(), result)


def print_warnings(console: Console, lines: list[str]) -> None:
    """Each line as ``warning: ...`` in yellow (results that are optimistic, inputs that were ignored)."""
    for line in lines:
        console.print(f"[yellow]warning:[/yellow] {line}", highlight=False)


def integer(low: int, high: int | None, expected: str) -> Callable[[str], int]:
    """An argparse type: an integer with ``low <= value`` (and ``value < high``), else "expected ``expected``"."""
    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = integer(1, None, "a positive integer")
non_negative_int = integer(0, None, "0 or a positive integer")
# what numpy, torch and scikit-learn all accept as a seed
random_seed = integer(0, 2**32, "a seed from 0 to 4294967295")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_list(cast: Callable[[str], Any], what: str) -> Callable[[str], list[Any]]:
    """An argparse type: one or more comma-separated positive numbers, each read with ``cast``."""
    def parse(text: str) -> list[Any]:
        try:
            values = [cast(v) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or any(not v > 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated positive {what}, got {text!r}")
        return values

    return parse


def split_fraction(text: str) -> float:
    """A held-out share: strictly between 0 and 1 (both sides of the split need images)."""
    value = fraction(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a share strictly between 0 and 1, such as 0.2, got {text!r}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value
