"""`status --watch` and `--exit-when-done`: read, redraw in place, decide when a script may go on.

Like condor_watch_q: the overview is redrawn in place (rich Live) every SECONDS; with
`--exit-when-done` the loop ends with exit status 0 once every selected stage has no work left, or 1
as soon as one is stalled (a script waiting for a campaign then does not wait forever).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from rich.console import Console, RenderableType

log = logging.getLogger("stagewatch.watch")

WORK_LEFT = ("jobs_idle", "jobs_running", "jobs_held", "jobs_suspended", "files_in_flight", "files_pending")
"""The glossary's "work left" (the stall rule's): jobs that may still run, files a job has or may get."""


def has_work_left(stage: dict[str, Any]) -> bool:
    """True while the stage has idle, running, held or suspended jobs, or in-flight or pending files."""
    return any(int(stage.get(k) or 0) > 0 for k in WORK_LEFT)


def verdict(result: dict[str, Any]) -> int | None:
    """1 if a selected stage is stalled, 0 if none has work left, None to keep waiting."""
    stages = result.get("stages") or []
    if any(s.get("stalled") for s in stages):
        return 1
    if stages and not any(has_work_left(s) for s in stages):
        return 0
    return None


def watch_loop(read: Callable[[], dict[str, Any]], draw: Callable[[dict[str, Any]], RenderableType] | None,
               console: Console, *, interval: float, exit_when_done: bool,
               sleep: Callable[[float], None] = time.sleep, max_rounds: int | None = None) -> int:
    """Read and draw every `interval` seconds; returns the exit status.

    Without `draw` (JSON output) nothing is drawn while waiting and the last result is printed as JSON
    when the loop ends. Ctrl-C ends the loop with status 0 (the user stopped watching).
    """
    import json

    from rich.live import Live

    rounds = 0
    result = read()
    live = Live(draw(result), console=console, auto_refresh=False, transient=False) if draw else None
    code = 0
    try:
        if live is not None:
            live.start(refresh=True)
        while True:
            if exit_when_done:
                decided = verdict(result)
                if decided is not None:
                    code = decided
                    log.info("watch.done exit=%d", code)
                    break
            rounds += 1
            if max_rounds is not None and rounds >= max_rounds:
                code = 0
                break
            sleep(interval)
            result = read()
            if live is not None and draw is not None:
                live.update(draw(result), refresh=True)
    except KeyboardInterrupt:
        code = 0
    finally:
        if live is not None:
            live.stop()
    if draw is None:
        console.file.write(json.dumps(result, indent=2) + "\n")
    return code
