"""The ``splitbench`` command line: parse, call the library, render.

Every command lives in its own module and registers itself on :data:`app`. Problems with
the user's input surface as :class:`~splitbench.errors.SplitbenchError` and end the
program with one line on stderr and exit code 2; anything else keeps its traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from typing import Annotated, Any

import typer
import typer.core

from splitbench import provenance
from splitbench.errors import SplitbenchError
from splitbench.results import finish_warm_ups

# torch and torchvision announce deprecations of their own internals at import time;
# they are not the user's concern.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)


class _Group(typer.core.TyperGroup):
    """The app's click group. Called in standalone mode (``app()`` from Python, typer's
    ``CliRunner``), it reports errors as the ``splitbench`` script does, through :func:`main`:
    ``error: …`` in one line rather than click's ``Usage: …`` and ``Error: …`` block."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if standalone_mode:
            main(list(args) if args is not None else None)
        return super().main(args, prog_name, complete_var, standalone_mode, **extra)


app = typer.Typer(
    name="splitbench",
    help="Measured, reproducible benchmarks for split computing and model compression.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("splitbench")
        except PackageNotFoundError:  # a source tree that was never installed
            from splitbench import __version__ as number
        typer.echo(f"splitbench {number}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Print splitbench's version and exit.")] = False,
) -> None:
    pass

# Importing the command modules registers their commands, in the order --help lists them.
from splitbench.cli import models, profile, split, evaluate, codec, train, prune, group, rd, link, report  # noqa: E402,F401,I001
from splitbench.cli import runs as _runs  # noqa: E402,I001

_runs.install()


INTERRUPTED = "interrupted; results written so far are complete and kept"


def _terminate(_signal: int, _frame: object) -> None:
    # SIGTERM (timeout, CI runners, container stops) takes the same clean path as Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    provenance.clear_warnings()
    try:
        code = app(args=argv, standalone_mode=False)
        finish_warm_ups()
        if code == 130:  # typer turns Ctrl-C into exit code 130 without a word
            _fail(INTERRUPTED, code=130)
    except SplitbenchError as error:
        finish_warm_ups()
        _fail(str(error))
    except KeyboardInterrupt:
        _fail(INTERRUPTED, code=130)
    except Exception as error:
        # Usage errors (bad option, value out of range) come as click's exception classes,
        # which recent typer releases vendor under another module: recognise them by shape.
        if type(error).__name__ == "NoArgsIsHelpError":  # `splitbench` alone: the help, not an error line
            print(error.format_message())
            sys.exit(2)
        if hasattr(error, "format_message") and hasattr(error, "exit_code"):
            _fail(error.format_message())
        if type(error).__name__ == "Abort":
            _fail("aborted", code=130)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int = 2) -> None:
    # One line, whatever the message: the first line is the message, the rest is detail
    # that belongs in a log, not in a terminal.
    print(f"error: {message.strip().splitlines()[0] if message.strip() else 'failed'}", file=sys.stderr)
    sys.exit(code)
