"""Catalogues as MLflow datasets: a content digest and a dataset input on a run."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from afmrl.digest import file_digest


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: the cache key
    return file_digest(path)[:32]


def catalog_digest(catalog_dir: str | Path) -> str:
    """sha256 (32 hex chars) of the catalogue's ``listings.parquet``: changes when any row does."""
    path = Path(catalog_dir) / "listings.parquet"
    st = path.stat()
    return _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


def log_catalog_input(client: Any, run_id: str, catalog_dir: str | Path, context: str,
                      name: str | None = None) -> str:  # fmt: skip
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    folder = Path(catalog_dir)
    digest = catalog_digest(folder)
    frame = pd.read_parquet(folder / "listings.parquet")
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are local files
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=str((folder / "listings.parquet").resolve()),
                                          name=name or folder.resolve().name, digest=digest)  # fmt: skip
    client.log_inputs(run_id, datasets=[
        DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])  # fmt: skip
    return digest
