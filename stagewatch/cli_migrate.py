"""``stagewatch migrate``: upgrade a store written by an older stagewatch to this one's schema version.

Every other command refuses a store of another version (stagewatch/store/migrations.py) with a
sentence naming this command; this is the only command that writes an upgrade. It runs the steps
from the store's version on, each recorded when done, so an interrupted migration is finished by
running it again. ``stagewatch.cli`` calls ``register(app)``.
"""

from __future__ import annotations

import logging
from typing import Optional

import typer

log = logging.getLogger("stagewatch.cli")


def register(app: typer.Typer) -> None:
    from stagewatch.cli import StoreOpt

    @app.command("migrate")
    def migrate_cmd(store: Optional[str] = StoreOpt) -> None:
        """Upgrade the store to this stagewatch's schema version (the only command that does)."""
        from stagewatch.cli import console
        from stagewatch.console import esc
        from stagewatch.store import open_store
        from stagewatch.store import migrations

        with open_store(store, create=False, check=False) as st:
            def said(step: migrations.Step) -> None:
                console.print(f"version {step.version - 1} -> {step.version}: {esc(step.why)}", highlight=False)

            res = migrations.migrate(st, st._apply_ddl, on_step=said)
            if res.steps:
                console.print(f"{esc(st.url)}: upgraded from schema version {res.before} to {res.after}.",
                              highlight=False)
            else:
                console.print(f"{esc(st.url)}: already at schema version {res.after}; nothing to do.",
                              highlight=False)
