"""One server for every reference model, chosen per request as osml's newer test container does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from airflow_provider_osml.models.base import Model


class SelectorModel:
    """Routes each call to the model named by the ``model_selection`` custom attribute (default: ``default``).

    Models are built once, with their default options; per-request options still apply.
    """

    name = "all"

    def __init__(self, models: Mapping[str, Model], default: str = "centerpoint") -> None:
        if default not in models:
            raise ValueError(f"default model {default!r} is not one of {', '.join(sorted(models))}")
        self.models = dict(models)
        self.default = default

    def __call__(self, image: np.ndarray, options: Mapping[str, Any]) -> dict:
        name = str(options.get("model_selection") or self.default)
        try:
            model = self.models[name]
        except KeyError:
            raise ValueError(f"unknown model_selection {name!r}") from None
        return model(image, options)
