"""Errors name Python parameters; the CLI names its flags for the same error (transferkit._errors, cli._common)."""

from __future__ import annotations

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
