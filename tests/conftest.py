"""Shared fixtures. Airflow's environment is set here, before any test imports Airflow."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "osml-reference"

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="osml-test-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__OSML__WORK_STORE": f"file://{_AIRFLOW_HOME}/osml-work",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES} (clone the project beside ../shared)")
    return FIXTURES


@pytest.fixture
def allowed_roots(tmp_path, monkeypatch) -> list[str]:
    """tmp_path and the shared fixtures are the only local roots images and File outputs may use."""
    roots = [str(tmp_path.resolve()), str(FIXTURES.resolve())]
    monkeypatch.setenv("AIRFLOW__OSML__ALLOWED_ROOTS", os.pathsep.join(roots))
    return roots


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata database for in-process ``dag.test()`` runs."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def model_runner_dag(airflow_db):
    """The ``osml_model_runner`` DAG as the dag-processor loads it from ``dags/``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("osml_model_runner")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_server(monkeypatch):
    """moto in server mode on 127.0.0.1 (real HTTP); the ``aws_default`` connection points at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        '{"conn_type": "aws", "login": "testing", "password": "testing", '
        f'"extra": {{"endpoint_url": "{endpoint}", "region_name": "us-east-1"}}}}',
    )
    try:
        yield endpoint
    finally:
        # moto's backends live in this process, shared by every server it starts: leave nothing to the next test
        import requests

        requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        server.stop()
