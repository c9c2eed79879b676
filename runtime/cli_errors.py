"""Library exceptions → one line on stderr and an exit code. Shared by every console script."""
from __future__ import annotations

import functools
from enum import Enum
import os
import sys

import typer

from .errors import DdpmEdgeError, MissingDependency
from .signals import install as install_signal_handlers, interrupted_line

EXPORT_HINT = "pip install 'ddpm-edge[export]'"


def require(*modules: str, hint: str = EXPORT_HINT) -> None:
    """Fail with exit 3 and the install hint when a module of an optional extra is missing (the
    runtime-only install has no torch/onnx), before a command imports what needs it."""
    import importlib.util
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingDependency(f"{name} is not installed (this command needs the export extra): {hint}")


def one_line_errors(prog: str):
    """Decorate a typer command: DdpmEdgeError → `prog: error: reason` + its exit code; Ctrl-C → 130;
    an unexpected exception → one line and exit 70 (DDPM_EDGE_DEBUG=1 re-raises it with its traceback)."""
    def wrap(command):
        @functools.wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except (typer.Exit, typer.Abort):
                raise
            except DdpmEdgeError as e:
                typer.echo(f"{prog}: error: {e}", err=True)
                raise typer.Exit(e.exit_code) from None
            except KeyboardInterrupt as e:   # Ctrl-C, or SIGTERM/SIGHUP (runtime/signals.py)
                line, code = interrupted_line(prog, e)
                typer.echo(line, err=True)
                raise typer.Exit(code) from None
            except Exception as e:
                if os.environ.get("DDPM_EDGE_DEBUG"):
                    raise
                typer.echo(f"{prog}: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                           "(set DDPM_EDGE_DEBUG=1 for a traceback)", err=True)
                raise typer.Exit(70) from None
        return run
    return wrap


class Device(str, Enum):
    """--device of every console script: auto (CUDA when present), cpu, cuda."""
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def make_app(help_text: str) -> typer.Typer:
    """A single-command typer app with plain (non-rich) errors and no pretty tracebacks."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                       help=help_text, context_settings={"help_option_names": ["-h", "--help"]})


def version_option(prog: str):
    """`--version` for a command: print "PROG VERSION" and exit 0 before anything else is checked."""
    def show(value: bool) -> None:
        if value:
            from ddpm_edge.runtime import __version__
            typer.echo(f"{prog} {__version__}")
            raise typer.Exit(0)
    return typer.Option(False, "--version", callback=show, is_eager=True, help="print the version and exit")


def _click_class(name: str) -> type:
    """Click's exception class `name`, from wherever this typer takes click (its own vendored copy in
    typer >= 0.25, the click package before): found on the public typer.BadParameter's bases."""
    return next(k for k in typer.BadParameter.__mro__ if k.__name__ == name)


def quiet_warnings() -> None:
    """A console script's stderr carries one line per outcome: Python warnings (NumPy overflow, torch
    deprecations) are not shown unless asked for (PYTHONWARNINGS / -W / DDPM_EDGE_DEBUG)."""
    import warnings
    if not sys.warnoptions and not os.environ.get("DDPM_EDGE_DEBUG"):
        warnings.simplefilter("ignore")


def run_app(app: typer.Typer, prog: str) -> None:
    """Run a console script. Click's own usage errors (an unknown option, `-n abc`) also become one line
    `prog: error: reason (see prog -h)` with exit 2, instead of click's usage block."""
    usage_error, click_exception = _click_class("UsageError"), _click_class("ClickException")
    install_signal_handlers()
    quiet_warnings()
    try:
        code = app(standalone_mode=False)   # the code of a typer.Exit, else the command's return value
    except usage_error as e:
        typer.echo(f"{prog}: error: {e.format_message()} (see {prog} -h)", err=True)
        sys.exit(2)
    except click_exception as e:            # e.g. a file option click itself could not open
        typer.echo(f"{prog}: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt) as e:   # click turns an interrupt while parsing into Abort
        line, code = interrupted_line(prog, e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else e)
        typer.echo(line, err=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)


def progress_bar(label: str, enabled: bool = True, describe=None):
    """A stderr progress bar (only on a terminal) as a callback `update(done, total, *info)`: a sampling
    `progress(done, total, x)`, or training's `(step, total, epoch, loss)` with `describe(*info)` → the
    text shown beside the bar. The bar may start part-way (a resumed run). Returns (update, close)."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    state = {"text": ""}

    def update(done: int, total: int, *info):
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = typer.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                                                   item_show_func=(lambda _: state["text"]) if describe else None)
            bar.__enter__()
        if describe is not None:
            state["text"] = describe(*info)
            bar.current_item = done   # item_show_func shows state["text"] for any current item
        bar.update(done - bar.pos)

    def close():
        if "bar" in state:
            state["bar"].__exit__(None, None, None)

    return update, close
