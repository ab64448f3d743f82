"""Wiring of the ``osml_model_runner`` DAG (one run = one ImageRequest); the logic is in ``operators`` (one module per task group).

A DAG file only has to call :func:`osml_model_runner` (see ``dags/osml_model_runner.py``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_osml import metrics
from airflow_provider_osml.operators import delivery, feature_selection, geolocation, inference, planning
from airflow_provider_osml.operators.placement import inference_task_kwargs
from airflow_provider_osml.request import image_request_schema

log = logging.getLogger(__name__)

# Region tasks are retried by Airflow; they overwrite their own work-store objects, so retries are safe.
REGION_TASK = {
    "retries": 2,
    "retry_delay": timedelta(seconds=10),
    "retry_exponential_backoff": True,
    "map_index_template": "{{ region_key }}",
}


def request_params() -> dict[str, Param]:
    """The ImageRequest JSON Schema as DAG params, so the trigger form validates what a user types."""
    schema = image_request_schema()
    required = set(schema.get("required", ()))
    params = {}
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        if "default" in prop:
            params[name] = Param(prop.pop("default"), description=description, **prop)
        elif name in required:
            params[name] = Param(description=description, **prop)
        else:
            params[name] = Param(None, description=description, anyOf=[prop, {"type": "null"}])
    return params


def _pull_all(ti, task_id: str) -> list:
    """Every mapped instance's return value of ``task_id`` (empty when it never ran)."""
    values = ti.xcom_pull(task_ids=task_id)  # map_indexes not given: every mapped instance
    if values is None:
        return []
    return [v for v in (values if isinstance(values, list) else [values]) if v is not None]


def _failed_tasks(ti) -> list[str]:
    """This run's failed task instances (``write_sink_0`` for a mapped one), for the status; best effort."""
    try:
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
    except Exception as exc:  # the status must still be reported
        log.warning("Could not read task states: %s", exc)
        return []
    return sorted(task for task, state in states.items() if str(state) == "failed")


def _set_map_index_label(region: dict) -> None:
    get_current_context()["region_key"] = region["key"]


@dag(
    dag_id="osml_model_runner",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=32,
    params=request_params(),
    tags=["osml"],
    doc_md=__doc__,
)
def osml_model_runner():
    """Run a model over one image: validate -> plan -> infer per region -> geolocate -> select -> sinks -> status."""

    @task
    def validate_request() -> dict:
        context = get_current_context()
        conf = context["dag_run"].conf or {}
        try:
            # The trigger form sends every param, unset ones as null: treat them as absent.
            return planning.validate_request({k: v for k, v in conf.items() if v is not None})
        except Exception as exc:  # report_status names the reason in the FAILED status
            context["ti"].xcom_push(key="rejection", value=str(exc)[:2000])
            raise

    @task
    def plan_regions(validated: dict) -> list[dict]:
        with delivery.timed_stage(validated, "planRegionsSeconds"):
            return planning.plan_regions(validated)

    # queue / executor / executor_config (GPU pods) from deployment settings, see operators/placement.py;
    # pool and pool_slots (one pool per model endpoint) are set per run by the cluster policy in operators/pools.py
    @task(**REGION_TASK, **inference_task_kwargs())
    def infer_region(validated: dict, region: dict) -> dict:
        _set_map_index_label(region)
        with metrics.operation(metrics.REGION_PROCESSING, metrics.dimensions(validated)):
            result = inference.infer_region(validated, region)
        metrics.region_processed(validated, result)
        return result

    @task(**REGION_TASK)
    def geolocate_region(validated: dict, region: dict) -> dict:
        _set_map_index_label(region)
        return geolocation.geolocate_region(validated, region)

    @task(retries=1)
    def select_features(validated: dict, regions) -> list[dict]:
        with delivery.timed_stage(validated, "selectFeaturesSeconds"), metrics.operation(metrics.FEATURE_SELECTION):
            return feature_selection.select_features(validated, list(regions[0 : len(regions)]))  # one XCom request

    @task(retries=2, retry_delay=timedelta(seconds=10))
    def write_sink(validated: dict, output: dict) -> dict:
        return delivery.write_sink(validated, output, get_current_context()["ti"].map_index)

    @task(trigger_rule="all_done")
    def report_status() -> dict:
        context = get_current_context()
        ti = context["ti"]
        validated = ti.xcom_pull(task_ids="validate_request")
        outputs = (validated or {}).get("outputs") or []
        delivered = [ti.xcom_pull(task_ids="write_sink", map_indexes=i) for i in range(len(outputs))]
        return delivery.report_status(
            validated,
            delivered,
            conf=context["dag_run"].conf or {},
            regions=_pull_all(ti, "infer_region"),
            failed_tasks=_failed_tasks(ti),
            rejection=None if validated else ti.xcom_pull(task_ids="validate_request", key="rejection"),
        )

    validated = validate_request()
    regions = plan_regions(validated)
    inferred = infer_region.partial(validated=validated).expand(region=regions)
    located = geolocate_region.partial(validated=validated).expand(region=inferred)
    outputs = select_features(validated, located)
    write_sink.partial(validated=validated).expand(output=outputs) >> report_status()
