"""The ``trainbus`` typer application: one sub-command per module of :mod:`trainbus.cli`.

Example:
    >>> run(["show", "--help"])  # doctest: +ELLIPSIS
    Usage: trainbus show [OPTIONS] ...
    ...
    0
"""

from __future__ import annotations

import typer

from trainbus.cli import export, plot, replay, show, tail

HELP = (
    "Look at trainbus event logs (EventLog's JSON lines): summaries, curves, what-if replays, "
    "a running job's epochs, TensorBoard and CSV exports. Exit codes: 0 done, 1 a file or data "
    "error, 2 a usage error, 130 interrupted."
)


def build() -> typer.Typer:
    """A new ``trainbus`` application with every command."""
    app = typer.Typer(
        name="trainbus",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    for module in (show, plot, replay, tail, export):
        app.command(module.NAME, help=module.HELP)(module.command)
    return app


def run(argv: list[str] | None = None) -> int:
    """Run the application on ``argv``; the exit code (typer ends by raising ``SystemExit``)."""
    try:
        build()(args=argv, prog_name="trainbus")
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
