"""Placement of the tile-inference tasks (queue, executor, Kubernetes pod override) from deployment settings."""

from __future__ import annotations

import json
import re

import pytest

from airflow_provider_osml.operators.placement import PlacementError, inference_task_kwargs
from airflow_provider_osml.operators.settings import load_settings

k8s = pytest.importorskip("kubernetes.client", reason="the [kubernetes] extra is not installed")

GPU_POD = """
spec:
  containers:
    - name: base
      image: registry.example.com/osml-airflow:gpu
      resources:
        requests: {cpu: "2", memory: 8Gi}
  serviceAccountName: osml-inference
"""


def kwargs_for(monkeypatch, **settings) -> dict:
    for key, value in settings.items():
        monkeypatch.setenv(f"AIRFLOW__OSML__{key.upper()}", value)
    return inference_task_kwargs(load_settings())


def base_container(pod):
    assert isinstance(pod, k8s.V1Pod)
    (base,) = [c for c in pod.spec.containers if c.name == "base"]
    return base


def test_nothing_configured_places_nothing(monkeypatch):
    assert kwargs_for(monkeypatch) == {}


def test_queue_and_executor(monkeypatch):
    assert kwargs_for(monkeypatch, inference_queue="gpu", inference_executor="KubernetesExecutor") == {
        "queue": "gpu", "executor": "KubernetesExecutor"}


def test_yaml_override_with_gpus_node_selector_and_tolerations(monkeypatch):
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    kwargs = kwargs_for(monkeypatch, inference_pod_override=GPU_POD, inference_gpus="1",
                        inference_node_selector="accelerator=nvidia-l4,pool=gpu",
                        inference_tolerations=json.dumps(tolerations))
    pod = kwargs["executor_config"]["pod_override"]
    base = base_container(pod)
    assert base.image == "registry.example.com/osml-airflow:gpu"
    assert base.resources.limits == {"nvidia.com/gpu": "1"}
    assert base.resources.requests == {"cpu": "2", "memory": "8Gi"}
    assert pod.spec.node_selector == {"accelerator": "nvidia-l4", "pool": "gpu"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod.spec.service_account_name == "osml-inference"
    # what the KubernetesExecutor receives is what the manifest said
    serialized = k8s.ApiClient().sanitize_for_serialization(pod)
    assert serialized["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_shorthands_alone_build_the_base_container(monkeypatch, tmp_path):
    selector = tmp_path / "selector.json"
    selector.write_text('{"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}')
    kwargs = kwargs_for(monkeypatch, inference_gpus="2", inference_cpu="4", inference_memory="16Gi",
                        inference_node_selector=f"@{selector}")
    pod = kwargs["executor_config"]["pod_override"]
    base = base_container(pod)
    assert base.resources.limits == {"nvidia.com/gpu": "2", "cpu": "4", "memory": "16Gi"}
    assert base.resources.requests == {"cpu": "4", "memory": "16Gi"}
    assert pod.spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}


@pytest.mark.parametrize(
    ("settings", "key", "reason"),
    [
        ({"inference_pod_override": '{"spec": {"containers": [{"name": "main"}]}}'},
         "INFERENCE_POD_OVERRIDE", "named 'base'"),
        ({"inference_pod_override": '{"spec": {"containers": [{"name": "base", "gpus": 1}]}}'},
         "INFERENCE_POD_OVERRIDE", "unknown Pod fields: spec.containers[0].gpus"),
        ({"inference_pod_override": "[1, 2]"}, "INFERENCE_POD_OVERRIDE", "a mapping"),
        ({"inference_pod_override": "@/nonexistent/pod.yaml"}, "INFERENCE_POD_OVERRIDE", "cannot read"),
        ({"inference_gpus": "one"}, "INFERENCE_GPUS", "whole number"),
        ({"inference_tolerations": '{"key": "gpu"}'}, "INFERENCE_TOLERATIONS", "list"),
        ({"inference_node_selector": "gpu"}, "INFERENCE_NODE_SELECTOR", "mapping"),
    ],
)
def test_bad_settings_name_the_setting_and_reason(monkeypatch, settings, key, reason):
    with pytest.raises(PlacementError, match=re.escape(reason)) as error:
        kwargs_for(monkeypatch, **settings)
    assert error.value.key == key
    assert str(error.value).startswith(f"AIRFLOW__OSML__{key}: ")


@pytest.mark.airflow
def test_the_dag_carries_the_placement_through_serialization(monkeypatch, airflow_db):
    """What the scheduler sees (the serialized DAG) still has the queue and a V1Pod override with ``base``."""
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_provider_osml.pipeline import osml_model_runner

    monkeypatch.setenv("AIRFLOW__OSML__INFERENCE_QUEUE", "gpu")
    monkeypatch.setenv("AIRFLOW__OSML__INFERENCE_GPUS", "1")
    dag = DagSerialization.from_dict(DagSerialization.to_dict(osml_model_runner()))
    infer = dag.get_task("infer_region")
    assert infer.queue == "gpu"
    assert base_container(infer.executor_config["pod_override"]).resources.limits == {"nvidia.com/gpu": "1"}
    others = [t for t in dag.tasks if t.task_id != "infer_region"]
    assert all(t.queue == "default" and not t.executor_config for t in others)
