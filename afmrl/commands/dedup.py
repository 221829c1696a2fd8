"""`afmrl dedup`: groups of listings that are the same product, and the review queue.

Registered in afmrl/cli.py with ``app.command("dedup")(dedup_cmd)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console


@guarded
def dedup_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated); product ids of dedup.label_splits label pairs")],
    encoder: Annotated[str | None, typer.Option(help="afmrl encoder folder or MLflow URI (its score is a feature); "
                                                     "none: pretrained text features only")] = None,  # fmt: skip
    out: Annotated[Path, typer.Option(help="folder for groups.parquet, review.parquet, dedup.json")] = Path("outputs/dedup"),
    pairs: Annotated[Path | None, typer.Option(help="labelled pairs CSV (ltable_id,rtable_id,label by listing id) to "
                                                    "calibrate on instead of the product ids")] = None,  # fmt: skip
) -> None:
    """Group duplicate listings (params dedup.*: threshold calibrated to dedup.target_precision) and queue near misses."""
    from afmrl.stages import dedup

    r = dedup.run(cfg_of(ctx), catalog, encoder, out, pairs)
    s = r.summary
    cal = s["calibration"]
    console.print(f"{s['groups']:,} groups of {s['grouped_listings']:,} listings (of {s['listings']:,}); threshold "
                  f"{s['threshold']:.3f} ({cal['rule']}: calibration precision {cal['precision']:.3f}, recall "
                  f"{cal['recall']:.3f}); {s['review_pairs']:,} pairs to review\ngroups: {r.groups_path}\n"
                  f"review: {r.review_path}\nsummary: {r.summary_path}", highlight=False)  # fmt: skip
