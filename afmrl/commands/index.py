"""`afmrl index build | publish | alias | rollback | info | search` and the top-level `afmrl search` (Milvus index).

Registered in afmrl/cli.py with::

    from afmrl.commands import index as index_commands
    app.add_typer(index_commands.app, name="index")
    app.command("search")(index_commands.search_cmd)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console

app = typer.Typer(help="Milvus index: build from a catalogue, switch the serving alias, search.", no_args_is_help=True)


@app.command("build")
@guarded
def build_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    encoder: Annotated[str, typer.Option(help="encoder folder, or an MLflow URI (models:/afmrl-encoder@champion)")] = (
        "outputs/train/encoder"
    ),
    out: Annotated[Path, typer.Option(help="folder for index.json")] = Path("outputs/index"),
) -> None:
    """Embed the listings (index.splits) and upsert them into the encoder's collection. Re-run to resume."""
    from afmrl.stages import index

    r = index.run(cfg_of(ctx), catalog, encoder, out)
    console.print(f"{r.backend}: collection {r.collection} holds {r.count:,} listings (dim {r.dim}, {r.index_type}/"
                  f"{r.metric}); embedded {r.embedded:,}, unchanged {r.unchanged:,}, deleted {r.deleted:,} "
                  f"in {r.seconds:.1f} s\nsummary: {r.summary_path}", highlight=False)  # fmt: skip


@app.command("publish")
@guarded
def publish_cmd(
    ctx: typer.Context,
    decision: Annotated[Path, typer.Option(help="the gate's decision.json")] = Path("outputs/promote/decision.json"),
    encoder: Annotated[str, typer.Option(help="the candidate encoder")] = "outputs/train/encoder",
    out: Annotated[Path, typer.Option(help="folder for publish.json")] = Path("outputs/publish"),
) -> None:
    """Switch the serving alias to the candidate's collection if (and only if) the gate promoted it."""
    from afmrl.stages import publish

    outcome = publish.run(cfg_of(ctx), decision, encoder, out)
    sys.stdout.write(json.dumps(outcome, indent=2, sort_keys=True, default=str) + "\n")


@app.command("alias")
@guarded
def alias_cmd(
    ctx: typer.Context,
    encoder: Annotated[str | None, typer.Option(help="encoder folder or MLflow URI whose collection to serve")] = None,
    collection: Annotated[str | None, typer.Option(help="collection name (instead of --encoder)")] = None,
    name: Annotated[str | None, typer.Option(help="alias (default: index.alias)")] = None,
    force: Annotated[bool, typer.Option(help="allow a collection whose build did not finish")] = False,
) -> None:
    """Point the serving alias at a collection (atomic switch); prints the previous target as JSON."""
    from afmrl.stages import index

    info = index.set_serving_alias(cfg_of(ctx), encoder=encoder, collection=collection, alias=name, force=force)
    sys.stdout.write(json.dumps(info, indent=2) + "\n")


@app.command("rollback")
@guarded
def rollback_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="alias (default: index.alias)")] = None,
) -> None:
    """Point the serving alias back at the collection it served before the last swap (kept: index.keep)."""
    from afmrl.stages import index

    info = index.rollback_alias(cfg_of(ctx), alias=name)
    sys.stdout.write(json.dumps(info, indent=2) + "\n")


@app.command("info")
@guarded
def info_cmd(ctx: typer.Context) -> None:
    """The afmrl collections (count, encoder, completeness) and the serving alias, as JSON."""
    from afmrl.retrieval.milvus import MilvusIndex

    cfg = cfg_of(ctx)
    with MilvusIndex.from_config(cfg.index) as idx:
        cols = []
        for c in idx.collections(cfg.index.collection_prefix):
            props = idx.properties(c)
            cols.append({"collection": c, **{k.removeprefix("afmrl."): v for k, v in props.items()
                                             if k.startswith("afmrl.")}, "count": idx.count(c), "dim": idx.dimension(c)})  # fmt: skip
        info = {"backend": idx.where, "alias": cfg.index.alias, "alias_target": idx.alias_target(cfg.index.alias),
                "collections": cols}  # fmt: skip
    sys.stdout.write(json.dumps(info, indent=2) + "\n")


@guarded
def search_command(
    ctx: typer.Context,
    listing: Annotated[str | None, typer.Option("--listing", help="query by a listing id in the index")] = None,
    image: Annotated[Path | None, typer.Option(help="query by an image file")] = None,
    text: Annotated[str | None, typer.Option(help="query by a text (title, description)")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="candidates (default: index.top_k)")] = None,
    category: Annotated[list[str] | None, typer.Option(help="only these categories (repeatable)")] = None,
    min_price: Annotated[float | None, typer.Option(help="price >= this")] = None,
    max_price: Annotated[float | None, typer.Option(help="price <= this")] = None,
    split: Annotated[list[str] | None, typer.Option(help="only listings of these splits (repeatable)")] = None,
    collection: Annotated[str | None, typer.Option(help="collection or alias (default: index.alias)")] = None,
    encoder: Annotated[str | None, typer.Option(help="encoder for image/text queries (default: the collection's)")] = None,
) -> None:
    """Identical-product candidates for a listing, image or text, with scores and product fields (JSON)."""
    from afmrl.retrieval.search import SearchFilters, find_identical

    filters = SearchFilters(categories=category or (), min_price=min_price, max_price=max_price, splits=split or ())
    result = find_identical(cfg_of(ctx), listing_id=listing, image=image, text=text, collection=collection,
                            encoder=encoder, top_k=top_k, filters=filters)  # fmt: skip
    sys.stdout.write(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")


search_cmd = search_command
app.command("search")(search_cmd)
