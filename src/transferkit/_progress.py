"""Progress bars on stderr (rich), so ``--json`` output on stdout stays clean."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr_console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; a no-op when disabled."""
    if not enabled or total <= 0:
        yield lambda n=1, **_: None
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=stderr_console, transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields: object) -> None:
            info = " ".join(f"{k}={v}" for k, v in fields.items())
            progress.update(task, advance=n, info=info)

        yield advance
