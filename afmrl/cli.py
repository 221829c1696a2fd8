"""The ``afmrl`` command line: one sub-command per stage, each a few lines calling the library.

Global options come first: ``afmrl --params params.yaml --set data.format=wdc-products data ingest --out DIR``.
Errors in input data or configuration print one line naming the file, record and field, and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands import attributes as attributes_commands
from afmrl.commands import index as index_commands
from afmrl.commands import models as models_commands
from afmrl.commands import registry as registry_commands
from afmrl.commands import train as train_commands
from afmrl.commands.common import cfg_of as _cfg
from afmrl.commands.common import guarded, root
from afmrl.commands.dedup import dedup_cmd
from afmrl.commands.serve import serve_cmd
from afmrl.commands.trigger import trigger_cmd
from afmrl.progress import console

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Catalogues: synthetic data and importers.", no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset or feed into the catalogue format.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")
app.add_typer(config_app, name="config")
app.callback()(root)
app.command("train")(train_commands.train_cmd)
app.command("select")(train_commands.select_cmd)
app.command("evaluate")(train_commands.evaluate_cmd)
app.command("trigger")(trigger_cmd)
app.add_typer(attributes_commands.app, name="attributes")
app.add_typer(models_commands.app, name="models")
app.command("promote")(registry_commands.promote_cmd)
app.command("ui")(registry_commands.ui_cmd)
app.command("register-extractor")(registry_commands.register_extractor_cmd)
app.add_typer(registry_commands.run_app, name="run")
app.add_typer(index_commands.app, name="index")
app.command("search")(index_commands.search_cmd)
app.command("serve")(serve_cmd)
app.command("dedup")(dedup_cmd)


@config_app.command("show")
@guarded
def config_show(ctx: typer.Context) -> None:
    """Print the resolved configuration as JSON."""
    sys.stdout.write(json.dumps(_cfg(ctx).to_dict(), indent=2) + "\n")


@data_app.command("ingest")
@guarded
def data_ingest(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="catalogue folder to write")] = Path("data/catalogue"),
) -> None:
    """The pipeline's input catalogue from data.format / data.path / data.columns (the ingest stage)."""
    from afmrl.stages import ingest

    r = ingest.run(_cfg(ctx), out)
    sizes = ", ".join(f"{k} {v}" for k, v in r.splits.items())
    console.print(f"catalogue {r.name} ({r.format}): {r.listings_path} ({r.listings} listings, {r.products} products; "
                  f"{sizes}; digest {r.digest[:12]})")  # fmt: skip


@data_app.command("synth")
@guarded
def data_synth(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="catalogue folder to write")] = Path("data/synthetic"),
) -> None:
    """Write the deterministic synthetic catalogue (params: synth.*, splits.*); a tool (the stage is ingest)."""
    import pandas as pd

    from afmrl.catalog.synth import generate

    cfg = _cfg(ctx)
    path = generate(cfg.synth, cfg.splits, out)
    n = len(pd.read_parquet(path, columns=["listing_id"]))
    console.print(f"synthetic catalogue: {path} ({n} listings)")


@import_app.command("grocery-store")
@guarded
def import_grocery(
    src: Annotated[Path, typer.Argument(help="GroceryStoreDataset folder (classes.csv, train.txt, ...)")],
    out: Annotated[Path, typer.Option(help="catalogue folder to write")] = Path("data/grocery-store"),
) -> None:
    """Import the Grocery Store Dataset (photos + iconic catalogue listings)."""
    from afmrl.catalog.importers import import_grocery_store

    console.print(f"catalogue: {import_grocery_store(src, out)}")


@import_app.command("wdc-products")
@guarded
def import_wdc(
    ctx: typer.Context,
    src: Annotated[Path, typer.Argument(help="WDC Products folder with tableA.csv, or the CSV itself")],
    out: Annotated[Path, typer.Option(help="catalogue folder to write")] = Path("data/wdc-products"),
) -> None:
    """Import WDC Products offers (product_id = cluster_id; splits by product)."""
    from afmrl.catalog.importers import import_wdc_products

    console.print(f"catalogue: {import_wdc_products(src, out, _cfg(ctx).splits)}")


@import_app.command("offers")
@guarded
def import_offers_cmd(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(help="any CSV with a header (a path or an fsspec URI)")],
    columns: Annotated[str, typer.Option(help="mapping, e.g. id=offer_id,title=name,product=cluster,image=photo")],
    out: Annotated[Path, typer.Option(help="catalogue folder to write")] = Path("data/offers"),
    source: Annotated[str | None, typer.Option(help="source name (default: the file name)")] = None,
) -> None:
    """Import a generic offers CSV with a column mapping (image=<column>: images copied into the catalogue)."""
    from afmrl.catalog.importers import import_offers, parse_column_mapping

    path = import_offers(src, out, parse_column_mapping(columns), _cfg(ctx).splits, source=source)
    console.print(f"catalogue: {path}")


@app.command("validate")
@guarded
def validate_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (listings.parquet + catalog.json)")],
    out: Annotated[Path, typer.Option(help="folder for the validated catalogue, quarantine and report")] = Path(
        "data/validated"
    ),
) -> None:
    """Validation gate (Great Expectations): quarantine bad rows, pass the rest on."""
    from afmrl.commands.headline import write_headline
    from afmrl.stages import validate

    try:
        result = validate.run(_cfg(ctx), catalog, out)
    finally:  # a failed gate writes its outputs first: its headline too (metrics.json, for `dvc metrics show`)
        write_headline("validate", out / validate.REPORT_FILE)
    console.print(
        f"validated: {result.passed} passed, {result.quarantined} quarantined ({result.fail_share:.1%})\n"
        f"  catalogue:  {result.out_dir / 'listings.parquet'}\n"
        f"  quarantine: {result.quarantine_path}\n  report:     {result.report_path}"
    )


@app.command("where")
@guarded
def where_cmd(ctx: typer.Context) -> None:
    """Print where the pipeline's outputs are: MLflow store, Milvus index, evaluation report, decision."""
    from afmrl.commands.common import where_lines

    for line in where_lines(_cfg(ctx)):
        console.print(line, highlight=False, soft_wrap=True)


# Warnings a normal run printed that are neither about the user's data nor settings: deprecations inside
# the ML stack, e.g. transformers' FutureWarning "`is_gradient_checkpointing` is deprecated" (trl and peft
# call it during SFT/RAR) and SQLAlchemy's SADeprecationWarning "The ``noload`` loader strategy" (mlflow's
# SQL store). They are silenced here, in one place, for these packages only (afmrl's own warnings still
# show; a user's -W or PYTHONWARNINGS turns them all back on). What stays on stderr is not a warning and
# not ours to change: mlflow's INFO lines when it creates a SQLite store (mlflow's logger), transformers'
# "Loading weights" tqdm bars, and the Milvus Lite server's own log (milvus_lite). gRPC's GOAWAY lines are
# quietened where pymilvus is imported (afmrl.retrieval.milvus.import_pymilvus).
THIRD_PARTY_WARNING_MODULES = (
    r"(transformers|trl|peft|accelerate|torch|torchvision|datasets|huggingface_hub|safetensors|mlflow|sqlalchemy"
    r"|alembic|great_expectations|pymilvus|milvus_lite|grpc|google\.protobuf|efficientnet_pytorch|pandas|pyarrow"
    r"|pydantic|marshmallow|altair|typer|click)(\..*)?$"
)
QUIET_MESSAGES = (r"`is_gradient_checkpointing` is deprecated", r"The ``noload`` loader strategy is deprecated")


def quiet_third_party_warnings() -> None:
    """Ignore FutureWarning / DeprecationWarning raised in third-party packages (and the known messages
    wherever they are attributed); nothing when the user asked for warnings (-W, PYTHONWARNINGS)."""
    if sys.warnoptions:
        return
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY_WARNING_MODULES)
    for message in QUIET_MESSAGES:
        warnings.filterwarnings("ignore", message=message)
    # transformers' "Loading weights" bar (read when transformers is imported): one more line per model load
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    quiet_third_party_warnings()
    app()


if __name__ == "__main__":
    main()
