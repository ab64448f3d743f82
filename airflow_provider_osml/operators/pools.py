"""One Airflow pool per model endpoint, so concurrent jobs share an endpoint's capacity.

The endpoint is only known when a run is triggered (``dag_run.conf``), but a task's pool is fixed when the
DAG is parsed, and Airflow 3 task code cannot touch the metadata database. So the pool is assigned by a
cluster policy, ``task_instance_mutation_hook``, which Airflow's scheduler calls with the run whenever it
creates or refreshes a task instance (mapped ones included: ``TaskMap.expand_mapped_task``). It runs
scheduler-side, where the database is at hand: it creates the pool when missing (see :func:`ensure_pool`), then
sets ``pool`` and ``pool_slots`` (= the region task's tile threads) on the task instance.

The policy is registered through the ``airflow.policy`` entry point of this distribution; a deployment with
its own ``airflow_local_settings.py`` can also call :func:`assign_endpoint_pool` from its hook.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_osml.operators.settings import load_settings

log = logging.getLogger(__name__)

DAG_ID = "osml_model_runner"
# Tasks that call the model endpoint: each of their task instances takes tile_workers slots of its pool.
POOLED_TASKS = frozenset({(DAG_ID, "infer_region")})
POOL_PREFIX = "osml_endpoint"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_READABLE = 120


def endpoint_pool_name(model_name: str, invoke_mode: str = "SM_ENDPOINT") -> str:
    """A stable, readable pool name for one endpoint, e.g. ``osml_endpoint__sm__my-model``.

    HTTP endpoints are named by host and port plus a short hash of the full URL (paths can differ).
    """
    if invoke_mode == "HTTP_ENDPOINT":
        parts = urlsplit(model_name)
        readable = f"http__{parts.hostname or ''}_{parts.port or ''}"
        digest = hashlib.sha256(model_name.encode()).hexdigest()[:10]
        return f"{POOL_PREFIX}__{_UNSAFE.sub('_', readable)[:MAX_READABLE]}__{digest}"
    readable = _UNSAFE.sub("_", model_name)
    if readable != model_name or len(readable) > MAX_READABLE:
        digest = hashlib.sha256(model_name.encode()).hexdigest()[:10]
        return f"{POOL_PREFIX}__sm__{readable[:MAX_READABLE]}__{digest}"
    return f"{POOL_PREFIX}__sm__{readable}"


def endpoint_from_conf(conf: Any) -> tuple[str, str] | None:
    """``(model name, invoke mode)`` from a run's ImageRequest conf, or None when it names no endpoint."""
    processor = conf.get("imageProcessor") if isinstance(conf, dict) else None
    if not isinstance(processor, dict) or not isinstance(processor.get("name"), str) or not processor["name"]:
        return None
    mode = processor.get("type") or "SM_ENDPOINT"
    return processor["name"], str(mode).upper()


def assign_endpoint_pool(task_instance, dag_run) -> None:
    """Put a model-calling task instance into its endpoint's pool (created with the configured size)."""
    if (task_instance.dag_id, task_instance.task_id) not in POOLED_TASKS or dag_run is None:
        return
    endpoint = endpoint_from_conf(getattr(dag_run, "conf", None))
    if endpoint is None:  # validate_request will reject the run; nothing to throttle
        return
    settings = load_settings()
    name = endpoint_pool_name(*endpoint)
    slots = ensure_pool(dag_run, name, settings.endpoint_pool_size, endpoint[0])
    task_instance.pool = name
    # A task asking for more slots than the pool has would never run.
    task_instance.pool_slots = max(1, min(settings.tile_workers, slots))


def ensure_pool(dag_run, name: str, size: int, endpoint: str) -> int:
    """Create the pool when missing; return its size (an existing pool is kept as the admin sized it).

    The scheduler's session must not commit (Airflow guards it: "UNEXPECTED COMMIT"), not even a savepoint.
    So on a server database the pool is inserted on a connection of its own and committed at once (a
    concurrent scheduler inserting the same pool just loses the race); SQLite, which has a single scheduler
    and one writer at a time, gets it added to the scheduler's own transaction.
    """
    from airflow.models.pool import Pool
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None:  # a detached run: nothing to create the pool with; the scheduler will report it
        return size
    slots = session.scalar(select(Pool.slots).where(Pool.pool == name))
    if slots is not None:
        return int(slots)
    row = {"pool": name, "slots": size, "include_deferred": False,
           "description": f"Model endpoint {endpoint} (created by airflow-provider-osml)"}
    bind = session.get_bind()
    if bind.dialect.name == "sqlite":
        session.add(Pool(**row))
        session.flush()
    else:
        try:
            with bind.engine.begin() as connection:
                connection.execute(insert(Pool.__table__).values(**row))
        except IntegrityError:  # created meanwhile by another scheduler
            slots = session.scalar(select(Pool.slots).where(Pool.pool == name))
            return int(slots if slots is not None else size)
    log.info("Created pool %s with %d slots for endpoint %s", name, size, endpoint)
    return size


def _hookimpl():
    from airflow.policies import hookimpl

    return hookimpl


@_hookimpl()
def task_instance_mutation_hook(task_instance, dag_run) -> None:
    """Cluster policy (entry point ``airflow.policy``): never lets a bad conf break the scheduler."""
    try:
        assign_endpoint_pool(task_instance, dag_run)
    except Exception:
        log.exception("Could not assign an endpoint pool to %s", getattr(task_instance, "task_id", "?"))
