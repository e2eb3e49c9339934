"""Signals a training process answers: SIGTERM and SIGHUP (a closed terminal or ssh session)
stop it like Ctrl-C, keeping the last complete epoch. Training takes one interrupt: once the
first has raised KeyboardInterrupt, further signals are ignored until the save is done, and a
process that a signal stopped ignores them while it exits. A signal the process inherited as
ignored (`nohup` ignores SIGHUP) stays ignored."""

from __future__ import annotations

import atexit
import signal
import threading
from contextlib import contextmanager

STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


RAISING = (signal.default_int_handler, _raise_interrupt)   # the handlers that turn a signal into Ctrl-C


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def interrupt_on_signals() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does (main thread only); one that
    is ignored (inherited so: nohup) stays ignored."""
    if _main_thread():
        for sig in STOPPING[1:]:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, _raise_interrupt)


class OneInterrupt:
    """The handler of the stopping signals while training runs (interrupt_once): the first
    raises KeyboardInterrupt and holds the rest, which are then ignored; hold() does the same
    for an interrupt or a failure that did not come from a signal."""

    def __init__(self):
        self.held = False
        self.signalled = False

    def __call__(self, signum, frame):
        if not self.held:
            self.held = self.signalled = True
            raise KeyboardInterrupt

    def hold(self) -> None:
        """From now on, until the block ends, a stopping signal changes nothing."""
        self.held = True


@contextmanager
def interrupt_once():
    """-> OneInterrupt. Inside the block (main thread), each stopping signal whose handler raises
    KeyboardInterrupt (Ctrl-C's, and interrupt_on_signals') raises it once: the next cannot land
    between `except KeyboardInterrupt` and the save it starts. Other handlers (SIG_IGN, SIG_DFL,
    a program's own) are left alone; all are as they were when the block ends. Elsewhere than
    the main thread, no change."""
    guard = OneInterrupt()
    if not _main_thread():
        yield guard
        return
    saved = {sig: signal.getsignal(sig) for sig in STOPPING}
    saved = {sig: handler for sig, handler in saved.items() if handler in RAISING}
    try:
        for sig in saved:
            signal.signal(sig, guard)
        yield guard
    finally:
        guard.hold()         # a signal while the handlers go back cannot leave some of them ours
        if guard.signalled:
            _ignore_while_exiting()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


_ignoring_at_exit = False


def _ignore_while_exiting() -> None:
    """Once a signal has stopped training, a later one (an impatient second Ctrl-C) must not
    spoil the exit: while Python exits, a Python-level handler raises inside an exit callback
    (a traceback on stderr) or, late in the shutdown, is put back to the default, so that the
    signal kills the process (-SIGINT instead of exit 130). An ignored signal stays ignored
    throughout, so at exit (atexit) the stopping signals are ignored."""
    global _ignoring_at_exit
    if not _ignoring_at_exit:
        _ignoring_at_exit = True
        atexit.register(_ignore_stopping)


def _ignore_stopping() -> None:
    if _main_thread():
        for sig in STOPPING:
            signal.signal(sig, signal.SIG_IGN)
