"""Fixtures for tests against a real Airflow deployment (CeleryExecutor, PostgreSQL, Redis) on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.integration.harness import AirflowDeployment, services_available


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def celery_services() -> None:
    """Skips (saying why) when PostgreSQL/Redis on 127.0.0.1 or the [celery] extra are missing."""
    reason = services_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def airflow_deployment(celery_services, tmp_path):
    """Factory: ``airflow_deployment(workers=2, env={...})`` starts a deployment that is stopped after the test."""
    started = []

    def start(**kwargs) -> AirflowDeployment:
        kwargs.setdefault("run_dir", tmp_path / f"airflow-{len(started)}")
        deployment = AirflowDeployment(**kwargs).start()
        started.append(deployment)
        return deployment

    yield start
    for deployment in reversed(started):
        deployment.stop()
