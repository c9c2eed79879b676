"""SIGTERM and SIGHUP handled like Ctrl-C: tools and terminals stop us with them, and a stopped run must
clean up exactly as an interrupted one does (temporary files and folders removed, nothing partial).

The handler raises `Terminated`, a KeyboardInterrupt, in the main thread, so every `finally`, every
`except BaseException` of the atomic writers (runtime/files.py) and every context manager unwinds as on
Ctrl-C; the CLI then exits 128 + the signal number (143 SIGTERM, 129 SIGHUP) with one line. Later
signals during that cleanup are ignored so it can finish.
"""
from __future__ import annotations

import signal
import threading

HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM/SIGHUP; unwinds like Ctrl-C."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")


def _raise(signum, frame):
    for other in HANDLED:   # the first signal starts the cleanup; a second must not interrupt it
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


def install() -> None:
    """Turn SIGTERM/SIGHUP into `Terminated` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _raise)


def interrupted_line(prog: str, error: BaseException) -> tuple[str, int]:
    """The one line and exit code of a KeyboardInterrupt: Ctrl-C (130) or a Terminated signal."""
    if isinstance(error, Terminated):
        return f"{prog}: terminated ({signal.Signals(error.signum).name})", error.exit_code
    return f"{prog}: interrupted", 130
