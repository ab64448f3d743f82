"""Where the tile-inference tasks run: ``executor``, ``queue`` and ``executor_config`` from deployment settings.

Inference is the only step that needs a GPU, so only ``infer_region`` is placed: e.g. on a Celery queue served
by GPU workers, or (Airflow 3 multiple executors, ``[core] executor = CeleryExecutor,KubernetesExecutor``) on
the KubernetesExecutor with a ``pod_override`` asking for GPUs, while every other task stays on the default
executor. The settings are read when the DAG is parsed, so the dag-processor and scheduler need them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airflow_provider_osml.operators.settings import DeploymentSettings, load_settings

BASE_CONTAINER = "base"  # the KubernetesExecutor merges a pod_override into the container of this name
GPU_RESOURCE = "nvidia.com/gpu"


class PlacementError(ValueError):
    """A placement setting is unusable; names the ``AIRFLOW__OSML__<KEY>`` and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"AIRFLOW__OSML__{key}: {reason}")


def inference_task_kwargs(settings: DeploymentSettings | None = None) -> dict[str, Any]:
    """Keyword arguments for the ``infer_region`` task: only those that are configured."""
    settings = settings or load_settings()
    kwargs: dict[str, Any] = {}
    if settings.inference_queue:
        kwargs["queue"] = settings.inference_queue
    if settings.inference_executor:
        kwargs["executor"] = settings.inference_executor
    pod = inference_pod_override(settings)
    if pod is not None:
        kwargs["executor_config"] = {"pod_override": to_v1pod(pod)}
    return kwargs


def inference_pod_override(settings: DeploymentSettings) -> dict | None:
    """The pod override as a Kubernetes manifest dict: ``INFERENCE_POD_OVERRIDE`` plus the shorthand settings."""
    pod = _document("INFERENCE_POD_OVERRIDE", settings.inference_pod_override) if settings.inference_pod_override else None
    shorthands = (settings.inference_gpus, settings.inference_cpu, settings.inference_memory,
                  settings.inference_node_selector, settings.inference_tolerations)
    if pod is None and not any(shorthands):
        return None
    pod = pod if pod is not None else {}
    if not isinstance(pod, dict):
        raise PlacementError("INFERENCE_POD_OVERRIDE", "must be a Pod manifest (a mapping)")
    spec = pod.setdefault("spec", {})
    containers = spec.setdefault("containers", [])
    base = next((c for c in containers if isinstance(c, dict) and c.get("name") == BASE_CONTAINER), None)
    if base is None:
        if containers:
            names = [c.get("name") if isinstance(c, dict) else c for c in containers]
            raise PlacementError("INFERENCE_POD_OVERRIDE",
                                 f"needs a container named {BASE_CONTAINER!r} (the task's container); found {names}")
        base = {"name": BASE_CONTAINER}
        containers.append(base)
    resources = base.setdefault("resources", {})
    if settings.inference_gpus:
        gpus = _positive_int("INFERENCE_GPUS", settings.inference_gpus)
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(gpus)  # GPUs are only set as limits
    for value, name in ((settings.inference_cpu, "cpu"), (settings.inference_memory, "memory")):
        if value:
            resources.setdefault("requests", {})[name] = value
            resources.setdefault("limits", {})[name] = value
    if not resources:
        base.pop("resources")
    if settings.inference_node_selector:
        spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **_node_selector(settings.inference_node_selector)}
    if settings.inference_tolerations:
        tolerations = _document("INFERENCE_TOLERATIONS", settings.inference_tolerations)
        if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
            raise PlacementError("INFERENCE_TOLERATIONS", "must be a JSON/YAML list of toleration mappings")
        spec["tolerations"] = [*spec.get("tolerations", []), *tolerations]
    return pod


def to_v1pod(manifest: dict):
    """A ``kubernetes.client.V1Pod``; fails on fields the Kubernetes API does not know (nothing dropped silently)."""
    try:
        from kubernetes.client import ApiClient, V1Pod
    except ImportError:
        raise PlacementError("INFERENCE_POD_OVERRIDE",
                             "needs the kubernetes client: pip install 'airflow-provider-osml[kubernetes]'") from None
    client = ApiClient()
    try:
        pod = client._ApiClient__deserialize(manifest, V1Pod)  # the client's own (private) dict -> model path
    except (TypeError, ValueError) as exc:
        raise PlacementError("INFERENCE_POD_OVERRIDE", f"not a valid Pod: {exc}") from None
    dropped = _dropped_fields(manifest, client.sanitize_for_serialization(pod))
    if dropped:
        raise PlacementError("INFERENCE_POD_OVERRIDE", f"unknown Pod fields: {', '.join(dropped)}")
    return pod


def _dropped_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        return [d for k, v in given.items()
                for d in ([f"{path}{k}"] if k not in kept else _dropped_fields(v, kept[k], f"{path}{k}."))]
    if isinstance(given, list) and isinstance(kept, list):
        return [d for i, (g, k) in enumerate(zip(given, kept, strict=False))
                for d in _dropped_fields(g, k, f"{path[:-1]}[{i}].")]
    return []


def _document(key: str, text: str) -> Any:
    """JSON or YAML text, or ``@path`` to a file holding it."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise PlacementError(key, f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlacementError(key, f"neither JSON nor YAML: {exc}") from None


def _positive_int(key: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise PlacementError(key, f"must be a whole number >= 0, got {text!r}")
    return value


def _node_selector(text: str) -> dict[str, str]:
    """``{"k": "v"}`` (JSON/YAML) or ``k=v,k2=v2``."""
    if "=" in text and not text.lstrip().startswith(("{", "@")):
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        if any(len(p) != 2 or not p[0].strip() for p in pairs):
            raise PlacementError("INFERENCE_NODE_SELECTOR", f"expected k=v,k2=v2, got {text!r}")
        return {k.strip(): v.strip() for k, v in pairs}
    value = _document("INFERENCE_NODE_SELECTOR", text)
    if not isinstance(value, dict):
        raise PlacementError("INFERENCE_NODE_SELECTOR", "must be a mapping of label to value")
    return {str(k): str(v) for k, v in value.items()}
