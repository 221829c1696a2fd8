"""``afmrl trigger``: decide whether to retrain (data changed, catalogue drift, schedule) as JSON.

Registered in afmrl/cli.py with ``app.command("trigger")(trigger_cmd)``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from afmrl.atomic import write_text_atomic
from afmrl.commands.common import cfg_of, guarded
from afmrl.errors import ConfigError
from afmrl.progress import console


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now {text!r} is not an ISO 8601 time", field="--now") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@guarded
def trigger_cmd(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="also write the decision JSON to this file")] = None,
    catalog: Annotated[
        Path | None, typer.Option(help="current catalogue folder (default: trigger.catalog)")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="catalogue the current model was trained on (default: the recorded profile)"),
    ] = None,
    repo: Annotated[Path, typer.Option(help="DVC repository root for the data check")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="retrain whatever the checks say")] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="after a successful training: record now + the catalogue profile as the new reference, then exit",
        ),
    ] = False,
    now: Annotated[str | None, typer.Option(help="decide as of this ISO 8601 time (default: now)")] = None,
) -> None:
    """Decide whether to retrain; prints {"retrain": bool, "reasons": [...], ...} (params: trigger.*)."""
    from afmrl.orchestration import state, trigger

    cfg = cfg_of(ctx)
    when = _parse_now(now)
    if record:
        from afmrl.tracking.runs import stage_run

        with stage_run(cfg.tracking, state.RECORD_STAGE) as run_:
            path = state.record_training(cfg, catalog, when=when, run=run_ if run_.run else None)
        doc = {
            "recorded": str(path),
            "trained_at": json.loads(path.read_text(encoding="utf-8"))["trained_at"],
        }
    else:
        decision = trigger.evaluate(
            cfg, repo_dir=repo, catalog=catalog, reference=reference, force=force, now=when
        )
        doc = decision.to_dict()
        verdict = "[bold green]retrain[/]" if decision.retrain else "[bold]no retrain[/]"
        console.print(
            f"trigger: {verdict}" + "".join(f"\n  - {r}" for r in decision.reasons), highlight=False
        )
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text)
    sys.stdout.write(text)
