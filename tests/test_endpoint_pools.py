"""Endpoint pool names, the settings they use, and the ``airflow.policy`` entry point the scheduler loads.

The policy running in Airflow's scheduler code (mapped task instances, pool created in the DB) is tested with
``dag.test()`` in test_endpoint_faults.py and on a real Celery deployment in integration/test_endpoint_pools.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_osml.operators.pools import (
    assign_endpoint_pool,
    endpoint_from_conf,
    endpoint_pool_name,
)
from tests.integration.test_endpoint_pools import policy_distribution


def test_pool_names_are_stable_readable_and_distinct():
    assert endpoint_pool_name("my-model") == "osml_endpoint__sm__my-model"
    a = endpoint_pool_name("https://models.example.com:8443/a/invocations", "HTTP_ENDPOINT")
    b = endpoint_pool_name("https://models.example.com:8443/b/invocations", "HTTP_ENDPOINT")
    assert a.startswith("osml_endpoint__http__models.example.com_8443__") and a != b
    assert a == endpoint_pool_name("https://models.example.com:8443/a/invocations", "HTTP_ENDPOINT")
    odd = endpoint_pool_name("http://[::1]:9/x?q=1 2", "HTTP_ENDPOINT")
    assert len(endpoint_pool_name("m" * 300)) < 256
    for name in (a, odd):
        assert all(c.isalnum() or c in "_.-" for c in name)


def test_endpoint_from_conf():
    assert endpoint_from_conf({"imageProcessor": {"name": "m", "type": "SM_ENDPOINT"}}) == ("m", "SM_ENDPOINT")
    assert endpoint_from_conf({"imageProcessor": {"name": "m"}}) == ("m", "SM_ENDPOINT")
    assert endpoint_from_conf({"imageProcessor": {"name": "http://h/i", "type": "http_endpoint"}}) == (
        "http://h/i", "HTTP_ENDPOINT")
    for bad in (None, {}, {"imageProcessor": "m"}, {"imageProcessor": {"name": ""}}, {"imageProcessor": {"name": 3}}):
        assert endpoint_from_conf(bad) is None


def test_only_model_calling_tasks_with_an_endpoint_are_touched():
    run = SimpleNamespace(conf={"imageProcessor": {"name": "m"}})
    for ti, dag_run in (
        (SimpleNamespace(dag_id="osml_model_runner", task_id="geolocate_region", pool="default_pool"), run),
        (SimpleNamespace(dag_id="other_dag", task_id="infer_region", pool="default_pool"), run),
        (SimpleNamespace(dag_id="osml_model_runner", task_id="infer_region", pool="default_pool"), None),
        (SimpleNamespace(dag_id="osml_model_runner", task_id="infer_region", pool="default_pool"),
         SimpleNamespace(conf={})),
    ):
        assign_endpoint_pool(ti, dag_run)
        assert ti.pool == "default_pool" and not hasattr(ti, "pool_slots")


def test_the_policy_never_raises_into_the_scheduler(monkeypatch, caplog):
    from airflow_provider_osml.operators import pools

    def broken(*_):
        raise RuntimeError("database went away")

    monkeypatch.setattr(pools, "ensure_pool", broken)
    ti = SimpleNamespace(dag_id="osml_model_runner", task_id="infer_region", pool="default_pool")
    pools.task_instance_mutation_hook(task_instance=ti, dag_run=SimpleNamespace(conf={"imageProcessor": {"name": "m"}}))
    assert ti.pool == "default_pool" and "Could not assign an endpoint pool" in caplog.text


def test_the_entry_point_registers_the_policy(tmp_path, monkeypatch):
    """What ``pip install`` writes for ``[project.entry-points."airflow.policy"]``, loaded as Airflow loads it."""
    import pluggy
    from airflow import policies

    monkeypatch.syspath_prepend(str(policy_distribution(tmp_path / "site")))
    manager = pluggy.PluginManager(policies.local_settings_hookspec.project_name)
    manager.add_hookspecs(policies)
    assert manager.load_setuptools_entrypoints("airflow.policy") >= 1
    impls = manager.hook.task_instance_mutation_hook.get_hookimpls()
    assert [impl.plugin.__name__ for impl in impls] == ["airflow_provider_osml.operators.pools"]


@pytest.mark.parametrize(("tile_workers", "pool_size", "slots"), [("2", "8", 2), ("16", "4", 4)])
def test_pool_slots_are_the_thread_count_capped_at_the_pool_size(monkeypatch, tile_workers, pool_size, slots):
    from airflow_provider_osml.operators import pools

    monkeypatch.setenv("AIRFLOW__OSML__TILE_WORKERS", tile_workers)
    monkeypatch.setenv("AIRFLOW__OSML__ENDPOINT_POOL_SIZE", pool_size)
    created = []
    monkeypatch.setattr(pools, "ensure_pool", lambda run, name, size, url: created.append((name, size)) or size)
    ti = SimpleNamespace(dag_id="osml_model_runner", task_id="infer_region", pool="default_pool")
    assign_endpoint_pool(ti, SimpleNamespace(conf={"imageProcessor": {"name": "my-model"}}))
    assert (ti.pool, ti.pool_slots) == ("osml_endpoint__sm__my-model", slots)
    assert created == [("osml_endpoint__sm__my-model", int(pool_size))]
