"""Progress of long work (demo, simulate, verify) on a terminal: a bar with counts and rate.

Why not a spinner: the demo takes 15-30 s; a spinner says nothing about whether it is nearly done or
stuck. Counting items as they stream through (events simulated and replayed, stages verified) shows
both. When stderr is not a terminal (CI, a pipe, a test) nothing is drawn: logs and files stay clean.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

T = TypeVar("T")

STEP = 2_000
"""Items between two updates of the bar (updating per item would cost more than the work)."""


def columns(unit: str) -> tuple:
    """A bar, the count (of the total when known), the rate and the time so far."""
    return (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.completed:,.0f}" + "{task.fields[of]}" + f" {unit}"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn())


@contextlib.contextmanager
def counting(console: Console, description: str, unit: str, total: int | None = None,
             enabled: bool | None = None) -> Iterator[Callable[[Iterable[T]], Iterator[T]]]:
    """A function that passes items through while counting them on a progress bar (stderr terminal only)."""
    if enabled is None:
        enabled = console.is_terminal
    if not enabled:
        yield lambda items: iter(items)
        return
    with Progress(*columns(unit), console=console, transient=False, refresh_per_second=5) as prog:
        task = prog.add_task(description, total=total, of=f"/{total:,}" if total else "", rate="")

        def track(items: Iterable[T]) -> Iterator[T]:
            n = 0
            for n, item in enumerate(items, 1):
                yield item
                if n % STEP == 0:
                    prog.update(task, completed=n, rate=_rate(prog, task, n))
            prog.update(task, completed=n, total=total or n, of=f"/{total or n:,}", rate=_rate(prog, task, n))

        yield track


def _rate(prog: Progress, task: int, done: int) -> str:
    """Items per second so far (rich's own speed column averages only the last seconds)."""
    elapsed = prog._tasks[task].elapsed if task in prog._tasks else None  # noqa: SLF001 - no public lookup by id
    if not elapsed:
        return ""
    return f"{done / elapsed:,.0f}/s"


@contextlib.contextmanager
def ticking(console: Console, description: str, unit: str, total: int | None = None,
            enabled: bool | None = None) -> Iterator[Callable[[], None]]:
    """A function to call once per step done (a query run, a stage checked): count, rate, time so far."""
    if enabled is None:
        enabled = console.is_terminal
    if not enabled:
        yield lambda: None
        return
    with Progress(*columns(unit), console=console, transient=False, refresh_per_second=5) as prog:
        task = prog.add_task(description, total=total, of=f"/{total:,}" if total else "", rate="")
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            prog.update(task, completed=done, rate=_rate(prog, task, done))

        yield tick
        prog.update(task, completed=done, total=total or done, of=f"/{total or done:,}", rate=_rate(prog, task, done))


class CountingStore:
    """A store whose every query ticks a progress bar (verify runs a few dozen heavy queries; counting
    them shows it advancing without changing what verify does)."""

    def __init__(self, store: object, tick: Callable[[], None]) -> None:
        self._store = store
        self._tick = tick

    def query(self, sql: str, *args: object, **kwargs: object) -> object:
        rows = self._store.query(sql, *args, **kwargs)  # type: ignore[attr-defined]
        self._tick()
        return rows

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)
