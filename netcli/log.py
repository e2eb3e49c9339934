"""Talk goes to stderr: one rich Console, a progress bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)


def format_record(record: dict) -> str:
    parts = [f"epoch {record['epoch']}"]
    for key in ("loss", "val_loss", "val_accuracy", "val_mse"):
        if key in record and record[key] is not None:
            parts.append(f"{key} {record[key]:.5g}")
    parts.append(f"{record.get('seconds', 0):.2f}s")
    return "  ".join(parts)


class Reporter:
    """Training progress on stderr. quiet: nothing but errors."""

    def __init__(self, quiet: bool = False, out: Console | None = None):
        self.quiet = quiet
        self.console = out or console
        self.bar: Progress | None = None

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, markup=False)

    def start(self, epochs: int, batches_per_epoch: int, done: int = 0) -> None:
        self.epochs = epochs
        if self.quiet or not self.console.is_terminal:
            return
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeRemainingColumn(), console=self.console, transient=False)
        self.bar.start()
        self.task = self.bar.add_task(f"epoch {done + 1}/{epochs}", total=epochs * batches_per_epoch,
                                      completed=done * batches_per_epoch, info="")

    def watch_gradient(self, net, loss_and_grad):
        """The function the training loop gets every step's loss and gradient from,
        loss_and_grad(theta, X, y) -> (J, grad) for `net`, as the loop will call it: a reporter
        that watches the steps returns it wrapped (compare counts gradient evaluations); this one
        returns it as it is."""
        return loss_and_grad

    def batch(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=f"loss {loss:.4g}")

    def epoch(self, record: dict) -> None:
        if self.quiet:
            return
        line = format_record(record)
        if self.bar is not None:
            self.bar.update(self.task, description=f"epoch {record['epoch']}/{self.epochs}")
            self.bar.console.print(line, markup=False)
        else:
            self.console.print(line, markup=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
