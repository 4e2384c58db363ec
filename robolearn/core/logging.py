"""Run logging: TensorBoard scalars, a progress bar with ETA and the main metrics, and run folders.

    run_dir = new_run_dir(Path("runs"), "quadrotor-hover")        # runs/quadrotor-hover-20250101-120000
    with RunLogger(run_dir, total=cfg.iterations, unit="it", desc="hover") as log:
        for it in range(cfg.iterations):
            ...
            log.log(global_step, {"reward": r, "episode/success": s, "loss/value": v}, main=("reward", "success"))
            log.update()
            if it % 100 == 0:
                log.print(f"saved {path}")

On a terminal the bar is live (rich, on stderr); elsewhere (CI, `nohup`, a file) one compact line is printed every
`interval` seconds and once at the end instead. tensorboard and rich are imported inside the constructor.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["RunLogger", "new_run_dir"]


def new_run_dir(root: str | Path, name: str) -> Path:
    """Create and return `root/<name>-YYYYmmdd-HHMMSS` (suffixed `-1`, `-2`, ... if that exists already)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    i = 0
    while True:
        run_dir = root / (f"{safe}-{stamp}" if i == 0 else f"{safe}-{stamp}-{i}")
        try:
            run_dir.mkdir()  # atomic: two processes never get the same folder
            return run_dir
        except FileExistsError:
            i += 1


class RunLogger:
    """TensorBoard scalars in `run_dir/tb` plus a progress bar (ETA and a few main metrics) on stderr."""

    def __init__(
        self,
        run_dir: str | Path,
        total: int,
        unit: str = "it",
        desc: str = "",
        tensorboard: bool = True,
        console: bool = True,
        *,
        interval: float = 30.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.total = total
        self.unit = unit
        self.desc = desc or self.run_dir.name
        self.interval = interval
        self.completed = 0.0
        self.latest: dict[str, float] = {}
        """The last value logged for every metric name."""
        self._main: tuple[str, ...] = ()
        self._closed = False
        self._start = self._last_line = time.monotonic()

        self._writer: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: pulls in tensorboard

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tb"), flush_secs=30)

        self._progress: Any = None
        self._task: Any = None
        self._lines = False
        if console:
            from rich.console import Console

            rich_console = Console(stderr=True)
            if rich_console.is_terminal:
                self._progress = _make_progress(rich_console, unit)
                self._task = self._progress.add_task(self.desc, total=total, metrics="")
                self._progress.start()
            else:
                self._lines = True

    def log(self, step: int, metrics: Mapping[str, Any], main: Sequence[str] | None = None) -> None:
        """Write scalars at `step`; `main` (kept until given again) picks the names shown next to the bar."""
        if main is not None:
            self._main = tuple(main)
        for tag, value in metrics.items():
            v = _scalar(tag, value)
            self.latest[tag] = v
            if self._writer is not None:
                self._writer.add_scalar(tag, v, step)
        if self._progress is not None:
            self._progress.update(self._task, metrics=self._main_text())
        self._maybe_line()

    def update(self, advance: float = 1) -> None:
        """Advance the progress by `advance` units."""
        self.completed += advance
        if self._progress is not None:
            self._progress.update(self._task, advance=advance)
        self._maybe_line()

    def print(self, msg: str) -> None:
        """Print a message on stderr (above the live bar on a terminal)."""
        if self._progress is not None:
            self._progress.console.print(msg, markup=False, highlight=False)
        else:
            print(msg, file=sys.stderr, flush=True)

    def flush(self) -> None:
        """Write pending TensorBoard events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Stop the progress display and close the TensorBoard writer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._progress is not None:
            self._progress.stop()
        if self._lines:
            self._emit_line()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --------------------------------------------------------------------------------------------------- internals

    def _main_text(self) -> str:
        parts = []
        for name in self._main:
            value = self.latest.get(name)
            if value is None:  # "success" also matches "episode/success"
                value = next((v for k, v in self.latest.items() if k.rsplit("/", 1)[-1] == name), None)
            if value is not None:
                parts.append(f"{name} {_fmt(value)}")
        return "  ".join(parts)

    def _maybe_line(self) -> None:
        if self._lines and time.monotonic() - self._last_line >= self.interval:
            self._emit_line()

    def _emit_line(self) -> None:
        now = time.monotonic()
        self._last_line = now
        elapsed = now - self._start
        rate = self.completed / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.completed / self.total if self.total else 100.0
        eta = _clock((self.total - self.completed) / rate) if rate > 0 else "?"
        line = (
            f"{self.desc} {_si(self.completed)}/{_si(self.total)} {self.unit} ({pct:.0f}%)"
            f" | {_si(rate)} {self.unit}/s | elapsed {_clock(elapsed)} | eta {eta}"
        )
        metrics = self._main_text()
        print(f"{line} | {metrics}" if metrics else line, file=sys.stderr, flush=True)


def _make_progress(rich_console: Any, unit: str) -> Any:
    """A rich Progress: description, bar, count, rate, elapsed, ETA, main metrics."""
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class CountColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{_si(task.completed)}/{_si(task.total or 0)} {unit}", style="progress.download")

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{_si(speed)} {unit}/s" if speed else f"? {unit}/s", style="progress.data.speed")

    def fixed() -> Column:
        return Column(no_wrap=True)

    return Progress(
        TextColumn("[bold]{task.description}", table_column=fixed()),
        BarColumn(bar_width=20, table_column=fixed()),
        CountColumn(table_column=fixed()),
        RateColumn(table_column=fixed()),
        TimeElapsedColumn(table_column=fixed()),
        TextColumn("eta", table_column=fixed()),
        TimeRemainingColumn(table_column=fixed()),
        TextColumn("{task.fields[metrics]}", table_column=Column(ratio=1)),  # wraps first when narrow
        console=rich_console,
    )


def _scalar(tag: str, value: Any) -> float:
    if hasattr(value, "numel"):  # torch tensor
        if value.numel() != 1:
            raise ValueError(f"metric '{tag}' is not a scalar (shape {tuple(value.shape)})")
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metric '{tag}' is not a number: {value!r}") from None


def _fmt(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _si(x: float) -> str:
    """Compact count: 950, 12.3k, 4.5M, 1.2G."""
    if not math.isfinite(x):
        return str(x)
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}" if x != int(x) else str(int(x))


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
