"""Errors name Python parameters; the CLI names its flags for the same error (transferkit._errors, cli._common)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.cli import build_parser
from transferkit.cli._common import error_line
from transferkit.jobs.fit import FitConfig, make_strategy

from .conftest import TINY


def cli_line(error: Exception, *argv: str) -> str:
    return error_line(error, build_parser().parse_args(list(argv)))


def test_a_message_names_parameters_the_python_way_and_the_cli_way() -> None:
    error = tk.TransferkitError("`baseline_image_size` applies to `baseline_model='arch'`; drop it, or set "
                                "`baseline=False`, `random_init=True` or `max_bad_fraction`.")
    assert str(error) == ("baseline_image_size applies to baseline_model='arch'; drop it, or set baseline=False, "
                          "random_init=True or max_bad_fraction.")
    assert cli_line(error, "fit", "DATA", "--out", "x") == (
        "--baseline-image-size applies to --baseline arch; drop it, or set --no-baseline, --random-init or --max-bad.")
    # a command without such flags keeps the Python names; backticked text that is no parameter stays as it is
    assert cli_line(error, "backbones").startswith("baseline_image_size applies to baseline_model='arch'")
    other = tk.BundleError("Create one with `transferkit fit ... --out DIR`.")
    assert str(other) == cli_line(other, "fit", "DATA", "--out", "x") == "Create one with `transferkit fit ... --out DIR`."


def test_cli_values_are_quoted_for_the_shell_and_training_settings_and_positionals_are_found() -> None:
    error = tk.TransferkitError("`labels='a: b,c'`, `peft=None`, `lr_head`, `data`")
    assert cli_line(error, "fit", "DATA", "--out", "x") == "--labels 'a: b,c', --peft None, --lr, DATA"
    assert cli_line(tk.TransferkitError("`backbone`"), "pretrain", "DATA", "--out", "x") == "--arch"


def test_fit_config_checks_speak_parameter_names() -> None:
    cfg = FitConfig(data="embedded", out="unused", backbone=TINY, strategy="fine-tune", lora_rank=4)
    with pytest.raises(tk.TransferkitError) as info:
        make_strategy(cfg)
    assert str(info.value) == "lora_rank applies to peft='lora'. Got peft=None; drop lora_rank."
    assert cli_line(info.value, "fit", "DATA", "--out", "x") == "--lora-rank applies to --peft lora. Got --peft None; drop --lora-rank."
    with pytest.raises(tk.TransferkitError, match=r"^image_size and epochs apply to fine-tune and scratch"):
        make_strategy(FitConfig(data="embedded", out="unused", backbone=TINY, epochs=2))


def test_parameters_named_otherwise_than_their_flag_are_aliased() -> None:
    error = tk.TransferkitError("`run_dir`, `num_tokens=70`, `init_text`, `layer='blocks.4'`, `max_bad_fraction`")
    assert cli_line(error, "fit", "DATA", "--out", "x") == "--out, --prompt-tokens 70, --prompt-init, --layer blocks.4, --max-bad"
    # rank has --layers, not --layer: the alias applies only where the command has no flag of the name itself
    assert cli_line(error, "rank", "DATA", "--candidates", TINY).endswith("--layers blocks.4, max_bad_fraction")
    assert cli_line(error, "pretrain", "DATA", "--out", "x").startswith("--out, num_tokens=70, init_text")


def test_a_parameter_the_flag_negates_is_spelled_the_other_way() -> None:
    error = tk.TransferkitError("use `pretrained=False`; not `pretrained=True`; `pretrained`")
    assert str(error) == "use pretrained=False; not pretrained=True; pretrained"
    assert cli_line(error, "fit", "DATA", "--out", "x") == "use --random-init; not without --random-init; --random-init"
    assert cli_line(error, "rank", "DATA", "--candidates", TINY) == str(error)  # no --random-init there


def test_library_errors_speak_python_and_the_cli_spells_them() -> None:
    from transferkit.backbones._text import check_text_options
    from transferkit.data._dataset import check_bad_fraction

    with pytest.raises(tk.BackboneError) as info:
        check_text_options("cls", None, ("mean", "sif"), "vectors:x")
    assert str(info.value).endswith("use pooling='mean' or drop pooling.")
    assert cli_line(info.value, "rank", "DATA", "--candidates", TINY).endswith("use --pooling mean or drop --pooling.")
    with pytest.raises(tk.DataError) as info:
        check_bad_fraction(3, 10, 0.1, "DATA")
    assert "(30% > max_bad_fraction 10%); fix or remove them, or raise max_bad_fraction." in str(info.value)
    assert "(30% > --max-bad 10%); fix or remove them, or raise --max-bad." in cli_line(info.value, "pretrain", "D", "--out", "x")

    with pytest.raises(tk.TransferkitError, match=r"^prompt_tokens must be a positive integer\. Got 0"):
        tk.FineTuneClassifier(TINY, peft="prompt-tuning", prompt_tokens=0).fit(None)  # refused before any data
    with pytest.raises(tk.TransferkitError, match=r"^prompt_init must be a non-empty text"):
        tk.FineTuneClassifier(TINY, peft="prompt-tuning", prompt_init=" ").fit(None)


#: command lines that a message may show as they are: installs, and `transferkit ...` commands in backticks
ALLOWED_FLAGS = re.compile(r"`transferkit [^`]*`|(?:pip|apt-get) install[^)]*")
FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _text(node: ast.AST) -> str:
    """A string literal's text; an f-string's parts joined, each placeholder as the strings inside it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) for v in node.values)
    return "".join(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return [_text(node)]
    return [s for child in ast.iter_child_nodes(node) for s in _strings(child)]


def test_no_library_error_names_a_cli_flag() -> None:
    """Outside cli/, a raise names parameters (`name`), never --flags; constants a raise uses are read too."""
    package = Path(tk.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if "cli" in path.relative_to(package).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            used = [constants[n.id] for n in ast.walk(node.exc) if isinstance(n, ast.Name) and n.id in constants]
            for text in _strings(node.exc) + [s for value in used for s in _strings(value)]:
                if FLAG.search(ALLOWED_FLAGS.sub("", text)):
                    found.append(f"{path.relative_to(package)}:{node.lineno}: {text}")
    assert not found, "\n".join(found)
