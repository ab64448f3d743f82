"""A model that fails on purpose, so tests and benchmarks can inject every fault a real endpoint shows.

Which calls fail:
- ``marker``: tiles whose top-left pixel (band 1) equals this value, every time (a tile chosen by position:
  paint its corner);
- ``fail_fraction``: that fraction of distinct tiles (by a hash of their pixels), every time;
- ``every``: every N-th call, whatever the tile (transient: the retry of that tile succeeds).
How they fail (``kind``): ``error`` (HTTP 500), ``throttle`` (HTTP 429), ``timeout`` (no answer for
``hang_seconds``), ``slow`` (a correct answer after ``hang_seconds``), ``garbage`` (200 with a non-JSON body),
``not_geojson`` (200 with JSON that is no FeatureCollection), ``no_geometry`` (a feature without any
geometry), ``nan`` (NaN coordinates). Calls that do not fail are answered by ``base`` (centerpoint).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from airflow_provider_osml.models.base import Model, ModelResponse, feature_collection, image_hex, parse_float

KINDS = ("error", "throttle", "timeout", "slow", "garbage", "not_geojson", "no_geometry", "nan")


class FailureModel:
    """Fails the chosen calls in the chosen way; see the module docstring.

    Overridable per request: ``kind``, ``marker``, ``fail_fraction``, ``every``, ``hang_seconds``.
    """

    name = "failure"

    def __init__(
        self,
        kind: str = "error",
        marker: float | None = None,
        fail_fraction: float = 0.0,
        every: int = 0,
        hang_seconds: float = 5.0,
        base: Model | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        from airflow_provider_osml.models.centerpoint import CenterpointModel

        self.kind = kind
        self.marker = None if marker is None else float(marker)
        self.fail_fraction = float(fail_fraction)
        self.every = int(every)
        self.hang_seconds = float(hang_seconds)
        self.base = base or CenterpointModel(segmentation=True)
        self._calls = itertools.count(1)
        self._lock = threading.Lock()
        self.failed_calls = 0

    def should_fail(self, image: np.ndarray, options: Mapping[str, Any], call: int) -> bool:
        marker = options.get("marker", self.marker)
        if marker is not None and image.size and float(image.reshape(-1, *image.shape[-2:])[0, 0, 0]) == float(marker):
            return True
        fraction = parse_float(options.get("fail_fraction", self.fail_fraction))
        if fraction > 0 and int(image_hex(image)[:8], 16) / 0xFFFFFFFF < fraction:
            return True
        every = int(options.get("every", self.every))
        return every > 0 and call % every == 0

    def __call__(self, image: np.ndarray, options: Mapping[str, Any]) -> dict:
        with self._lock:
            call = next(self._calls)
        if not self.should_fail(image, options, call):
            return self.base(image, options)
        with self._lock:
            self.failed_calls += 1
        kind = str(options.get("kind", self.kind))
        hang = parse_float(options.get("hang_seconds", self.hang_seconds))
        if kind == "error":
            raise ModelResponse(500, b"Unable to process request.")
        if kind == "throttle":
            raise ModelResponse(429, b"Too Many Requests")
        if kind in ("timeout", "slow"):
            time.sleep(hang)
            if kind == "timeout":
                raise ModelResponse(504, b"Model timed out")
            return self.base(image, options)
        if kind == "garbage":
            raise ModelResponse(200, b"\x89garbage, not JSON \x00\xff")
        if kind == "not_geojson":
            return {"detections": "none here"}
        height, width = int(image.shape[-2]), int(image.shape[-1])
        if kind == "no_geometry":
            return feature_collection([{"type": "Feature", "geometry": None, "properties": {"score": 1.0}}])
        bbox = [float("nan"), 0.0, width / 2, height / 2]
        return feature_collection([{"type": "Feature", "geometry": None, "properties": {"imageBBox": bbox}}])
