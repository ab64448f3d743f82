"""Reference model servers speaking the SageMaker container contract (standalone: no Airflow import)."""

from __future__ import annotations

from typing import Any

from airflow_provider_osml.models.base import Model, ModelResponse
from airflow_provider_osml.models.blobs import BlobsModel
from airflow_provider_osml.models.centerpoint import CenterpointModel
from airflow_provider_osml.models.codec import TileDecodeError, decode_tile, encode_tile
from airflow_provider_osml.models.failure import FailureModel
from airflow_provider_osml.models.flood import FloodModel
from airflow_provider_osml.models.selector import SelectorModel
from airflow_provider_osml.models.server import ModelServer, parse_custom_attributes

__all__ = [
    "MODELS",
    "BlobsModel",
    "CenterpointModel",
    "FailureModel",
    "FloodModel",
    "Model",
    "ModelResponse",
    "ModelServer",
    "SelectorModel",
    "TileDecodeError",
    "create_model",
    "decode_tile",
    "encode_tile",
    "parse_custom_attributes",
    "serve_model",
]

MODELS: dict[str, type] = {
    "centerpoint": CenterpointModel,
    "blobs": BlobsModel,
    "flood": FloodModel,
    "failure": FailureModel,
    "all": lambda default="centerpoint", **_: SelectorModel(
        {name: factory() for name, factory in MODELS.items() if name != "all"}, default
    ),
}


def create_model(name: str, **options: Any) -> Model:
    """Build a registered model by name with constructor options."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
    return factory(**options)


def serve_model(
    name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    latency_seconds: float = 0.0,
    allow_remote: bool = False,
    verbose: bool = False,
    **options: Any,
) -> ModelServer:
    """Create the named model and return a started ``ModelServer`` for it (call ``.stop()`` when done)."""
    model = create_model(name, **options)
    server = ModelServer(
        model, host, port, allow_remote=allow_remote, latency_seconds=latency_seconds, verbose=verbose
    )
    return server.start()
