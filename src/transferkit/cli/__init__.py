"""``transferkit`` command line: a thin skin over the public API.

User mistakes become one red line on stderr and exit code 2, never a traceback. Library errors name Python
parameters (`` `image_size` ``); the line names the command's flags instead (``--image-size``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._errors import TransferkitError
from .._progress import stderr_console
from .._version import __version__

# Each command module imports its job (torch, scikit-learn, timm, ...) only when it runs: `transferkit fit --help`
# or a run whose features are all cached does not pay for what it does not use (tests/test_imports.py).
from . import (
    adapt,
    backbones,
    cluster,
    curve,
    distill,
    evaluate,
    export,
    fit,
    predict,
    pretrain,
    quickstart,
    rank,
    report,
)
from ._common import error_line, flag_spelling

COMMANDS = (quickstart, fit, predict, evaluate, report, export, pretrain, rank, curve, adapt, cluster, backbones,
            distill)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse's own code for usage errors)
        stderr_console.print(f"[red]error:[/red] {message} (see `{self.prog} --help`)", highlight=False, soft_wrap=True)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="transferkit", description="Transfer learning: reuse a pretrained backbone on a new task.")
    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub)
    for command_parser in sub.choices.values():  # errors speak parameter names; each command spells its flags
        command_parser.set_defaults(spell_parameter=flag_spelling(command_parser))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .._dist import init_distributed

        init_distributed()
        return int(args.run(args) or 0)
    except TransferkitError as e:
        if _interrupted(e):
            stderr_console.print(f"[yellow]interrupted:[/yellow] {error_line(e, args)}", highlight=False,
                                 soft_wrap=True)
            return 130
        stderr_console.print(f"[red]error:[/red] {error_line(e, args)}", highlight=False, soft_wrap=True)
        return 2
    except OSError as e:  # the file system said no: a path the user chose, permissions or a full disk
        stderr_console.print(f"[red]error:[/red] {describe_os_error(e)}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        stderr_console.print("[yellow]interrupted[/yellow]: partial results already written are kept (cache, files).")
        return 130


def _interrupted(e: TransferkitError) -> bool:
    """A training run stopped by a signal (``training.Interrupted``; raised only once that module is loaded)."""
    loop = sys.modules.get("transferkit.training.loop")
    return loop is not None and isinstance(e, loop.Interrupted)


def describe_os_error(e: OSError) -> str:
    """One line naming the file, what the system said and what to check."""
    where = f" {str(e.filename)!r}" if e.filename else ""
    what = e.strerror or str(e)
    if isinstance(e, PermissionError):
        fix = "choose a path you may write to, or fix its permissions"
    elif getattr(e, "errno", None) == 28:  # ENOSPC
        fix = "free disk space or choose another --out; finished files were written atomically and are kept"
    else:
        fix = "check that the path exists and its parent folder can be created"
    return f"{what}:{where}; {fix}."


def entrypoint() -> None:
    sys.exit(main())
