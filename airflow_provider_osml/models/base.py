"""The model interface shared by the reference model servers, plus small option helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


class ModelResponse(Exception):  # noqa: N818 -- not an error: an answer the model chooses to give
    """Raised by a model to answer with this exact status and body (used to inject faults)."""

    def __init__(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.content_type = status, body, content_type


@runtime_checkable
class Model(Protocol):
    """A model: takes a decoded tile (bands, h, w) and per-request options, returns a FeatureCollection."""

    name: str

    def __call__(self, image: np.ndarray, options: Mapping[str, Any]) -> dict: ...


def parse_bool(value: Any) -> bool:
    """Read a boolean from a custom attribute string ("true", "False", "1") or a real bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_float(value: Any) -> float:
    """Read a float from a custom attribute string or a number."""
    return float(str(value).strip()) if isinstance(value, str) else float(value)


def parse_int(value: Any) -> int:
    """Read an int from a custom attribute string or a number."""
    return int(str(value).strip()) if isinstance(value, str) else int(value)


def stable_hex(*parts: object) -> str:
    """A deterministic 32-char hex id (same shape as ``secrets.token_hex(16)``)."""
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def image_hex(image: np.ndarray) -> str:
    """Deterministic id of a tile: its shape, dtype and pixels (so distinct tiles get distinct ids)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16)  # fast on large tiles
    return stable_hex(image.shape, str(image.dtype), digest.digest())


def feature_collection(features: list[dict]) -> dict:
    """Wrap features the way the osml test models do."""
    return {"type": "FeatureCollection", "features": features}
