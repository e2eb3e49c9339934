"""Signals a training process answers: SIGTERM and SIGHUP (a closed terminal or ssh session)
stop it like Ctrl-C, keeping the last complete epoch; while that is being saved, further
signals are ignored, so the save finishes and the status is right."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOPPING = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOPPING[1:]:
            signal.signal(sig, _raise_interrupt)


@contextmanager
def signals_ignored():
    """Ctrl-C, SIGTERM and SIGHUP ignored inside the block (main thread; elsewhere, no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOPPING}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
