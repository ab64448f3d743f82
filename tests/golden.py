"""osml-model-runner's golden-output comparison rules (fixtures README; osml-ecosystem 4.3)."""

from __future__ import annotations

import json
import math


def _round(value):
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def _geometry(geometry: dict | None):
    if geometry is None:
        return None
    return {"type": geometry["type"], "coordinates": _round(json.loads(json.dumps(geometry["coordinates"])))}


def assert_matches_golden(expected: list[dict], actual: list[dict]) -> None:
    assert len(actual) == len(expected), f"{len(actual)} features, golden has {len(expected)}"

    def key(feature):
        return str(_geometry(feature["properties"]["imageGeometry"]))

    for want, got in zip(sorted(expected, key=key), sorted(actual, key=key), strict=True):
        wp, gp = want["properties"], got["properties"]
        assert got["type"] == want["type"]
        assert _geometry(got["geometry"]) == _geometry(want["geometry"])
        assert _geometry(gp["imageGeometry"]) == _geometry(wp["imageGeometry"])
        assert gp["featureClasses"] == wp["featureClasses"]
        assert math.isclose(gp["center_longitude"], wp["center_longitude"], abs_tol=1e-8)
        assert math.isclose(gp["center_latitude"], wp["center_latitude"], abs_tol=1e-8)
        assert "inferenceMetadata" in gp
        if "sourceMetadata" in wp:
            for w, g in zip(wp["sourceMetadata"], gp["sourceMetadata"], strict=True):
                assert {k: v for k, v in g.items() if k not in ("location", "sourceDT")} == {
                    k: v for k, v in w.items() if k not in ("location", "sourceDT")
                }
