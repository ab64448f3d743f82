"""docker/: the Celery compose file, the image and the Helm values, checked without a Docker engine or cluster.

The compose services run the commands the integration harness runs (parsed here by Airflow's own CLI parser),
with the settings the harness needs; the Helm values' inference settings render a valid Kubernetes pod override.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from airflow_provider_osml.models.__main__ import build_parser as model_parser
from tests.conftest import REPO

DOCKER = REPO / "docker"
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "worker-1", "worker-2"}
# What every component of a distributed deployment needs (docs/deploy-celery.md, harness.environment()).
REQUIRED_ENV = {
    "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__OSML__WORK_STORE", "AIRFLOW_CONN_AWS_DEFAULT",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_has_the_celery_deployment(compose):
    services = compose["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres", "redis", "moto", "model"}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert REQUIRED_ENV <= set(env), f"{name} lacks {REQUIRED_ENV - set(env)}"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__OSML__WORK_STORE"].startswith("s3://"), "containers cannot share a file:// work store"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://api-server:8080/")
        assert services[name]["image"] == "osml-airflow:0.1.0"
    # only the API is published, and only on the host's loopback
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"api-server": ["127.0.0.1:8080:8080"]}


def test_compose_commands_are_valid_airflow_commands(compose):
    """Parsed by Airflow's own CLI parser with the CeleryExecutor, as the containers will run them."""
    commands = {name: compose["services"][name]["command"] for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert all(c[0] == "airflow" for c in commands.values())
    init = compose["services"]["airflow-init"]["command"][-1]
    assert init.startswith("airflow db migrate &&")
    commands["airflow-init"] = ["airflow", "db", "migrate"]
    script = (
        "import json, sys\n"
        "from airflow.cli import cli_parser\n"
        "parser = cli_parser.get_parser()\n"
        "for name, command in json.load(sys.stdin).items():\n"
        "    parser.parse_args(command[1:])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(commands), capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"})
    assert done.returncode == 0, done.stderr[-2000:]
    queues = {name: c[c.index("-q") + 1] for name, c in commands.items() if "worker" in c}
    assert queues == {"worker-1": "default,osml-inference", "worker-2": "osml-inference"}
    assert compose["services"]["worker-1"]["environment"]["AIRFLOW__OSML__INFERENCE_QUEUE"] == "osml-inference"


def test_compose_model_service_runs_the_reference_model_cli(compose):
    model = compose["services"]["model"]
    assert model["build"]["dockerfile"] == "docker/Dockerfile.model"
    args = model_parser().parse_args(model["command"])
    assert (args.name, args.host, args.port) == ("blobs", "0.0.0.0", 8080)


def test_image_builds_from_files_that_exist_with_the_pinned_airflow():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    constraints = (REPO / "constraints" / "constraints-airflow-3.3.2-py3.11.txt").read_text()
    airflow_pin = re.search(r"^apache-airflow==(\S+)$", constraints, re.M).group(1)
    assert f"ARG AIRFLOW_IMAGE=apache/airflow:{airflow_pin}-python3.11" in dockerfile
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        sources = [s for s in line.split()[:-1] if not s.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"COPY source {source} missing"
    extras = re.search(r'pip install .*"\.\[([a-z,]+)\]"', dockerfile).group(1).split(",")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert all(re.search(rf"^{extra} = \[", pyproject, re.M) for extra in extras)
    assert "-c constraints/constraints-airflow-3.3.2-py3.11.txt" in dockerfile


def test_helm_values_render_a_valid_gpu_pod_override(monkeypatch):
    k8s = pytest.importorskip("kubernetes.client", reason="the [kubernetes] extra is not installed")
    from airflow_provider_osml.operators.placement import inference_task_kwargs
    from airflow_provider_osml.operators.settings import load_settings

    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["images"]["airflow"]["repository"] and values["airflowVersion"] == "3.3.2"
    assert {"AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW__API_AUTH__JWT_SECRET"} <= {s["envName"] for s in values["secret"]}
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["AIRFLOW__OSML__WORK_STORE"].startswith("s3://")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pod = inference_task_kwargs(load_settings())["executor_config"]["pod_override"]
    assert isinstance(pod, k8s.V1Pod)
    (base,) = pod.spec.containers
    assert base.name == "base"
    assert base.resources.limits == {"nvidia.com/gpu": "1", "cpu": "4", "memory": "16Gi"}
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"
