"""``write_sink`` and ``report_status``: deliver the selected features and report the image's status."""

from __future__ import annotations

import contextlib
import logging
import time

from airflow_provider_osml import metrics, status
from airflow_provider_osml.operators.context import (
    FAILED_TILES,
    SELECTED_FEATURES,
    SELECTION,
    STAGES,
    STATUS_RECORD,
    TaskContext,
)
from airflow_provider_osml.operators.work_store import WorkStore

log = logging.getLogger(__name__)


def sink_error_key(index: int) -> str:
    return f"sinks/{index}.error.json"


def record_stage(store: WorkStore, stage: str, seconds: float) -> None:
    """Add one sequential task's duration to the job's stage timings (the status record reports them)."""
    stages = store.read_json(STAGES) if store.exists(STAGES) else {}
    stages[stage] = round(seconds, 3)
    store.write_json(STAGES, stages)


@contextlib.contextmanager
def timed_stage(validated: dict, stage: str):
    """Record how long the block took as ``stage`` (only when it succeeds: a retry records its own time)."""
    started = time.monotonic()
    yield
    record_stage(TaskContext.from_validated(validated).store, stage, time.monotonic() - started)


# --- write_sink ------------------------------------------------------------------------------------

# AWS error codes no retry can fix: the sink's task fails at once instead of after its retry delays
PERMANENT_ERRORS = ("NoSuchBucket", "ResourceNotFoundException", "AccessDenied", "AccessDeniedException",
                    "InvalidAccessKeyId")


def is_permanent(exc: BaseException) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    return code in PERMANENT_ERRORS or any(f"({name})" in str(exc) for name in PERMANENT_ERRORS)



def write_sink(validated: dict, output: dict, index: int = 0) -> dict:
    """Deliver the selected FeatureCollection to one sink; a re-run overwrites the same object.

    A failure is recorded in the work store (the status record names the sink and its error) and re-raised,
    so Airflow retries this sink's task alone and, after its retries, fails it without touching the others.
    """
    from airflow_provider_osml.sinks import create_sink, describe_sink

    ctx = TaskContext.from_validated(validated)
    sink = create_sink(output, aws_conn_id=ctx.settings.aws_conn_id)
    started = time.monotonic()
    try:
        with metrics.operation(metrics.FEATURE_DISSEMINATION, {"SinkType": output["type"]}):
            with ctx.store.local_file(SELECTED_FEATURES) as local:
                target = sink.write(ctx.request.job_id, local)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        ctx.store.write_json(sink_error_key(index), {"sink": describe_sink(output), "error": error})
        if is_permanent(exc):  # retrying a missing bucket or stream only delays the status
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"{describe_sink(output)}: {error}") from exc
        raise
    ctx.store.remove(sink_error_key(index))
    log.info("Job %s: features written to %s", ctx.request.job_id, target)
    return {"type": output["type"], "target": target, "seconds": round(time.monotonic() - started, 3)}


# --- report_status ---------------------------------------------------------------------------------


def image_status(selection: dict | None, outputs: list[dict], delivered: list[dict | None]) -> tuple[str, list]:
    """SUCCESS, PARTIAL or FAILED from what the run produced, and the names of the sinks that failed."""
    failed_sinks = [
        {"index": i, "type": out["type"]} for i, (out, res) in enumerate(zip(outputs, delivered, strict=False))
        if res is None
    ]
    failed_sinks += [{"index": i, "type": outputs[i]["type"]} for i in range(len(delivered), len(outputs))]
    if selection is None or len(failed_sinks) == len(outputs):
        return "FAILED", failed_sinks
    if selection["failedTiles"] or failed_sinks:
        return "PARTIAL", failed_sinks
    return "SUCCESS", failed_sinks


def _failure_reason(selection: dict | None, failed_sinks: list[dict], failed_tasks: list[str]) -> str | None:
    if selection is None:
        failed = ", ".join(failed_tasks) or "an upstream task"
        return f"no features were selected: {failed} failed (see the task log)"
    parts = []
    if selection.get("failedTiles"):
        parts.append(f"{selection['failedTiles']} of {selection.get('tiles', '?')} tile(s) failed")
    if failed_sinks:
        parts.append("sink(s) failed: " + "; ".join(f"outputs[{s['index']}] {s.get('sink', s['type'])}"
                                                   for s in failed_sinks))
    return "; ".join(parts) or None


def _durations(validated: dict, stages: dict, regions: list[dict] | None, delivered: list[dict | None]) -> dict:
    durations = {"totalSeconds": round(time.time() - validated["startedAt"], 3), **stages}
    region_seconds = [r["seconds"] for r in regions or () if r and "seconds" in r]
    if region_seconds:
        durations["inferRegionSecondsSum"] = round(sum(region_seconds), 3)
        durations["inferRegionSecondsMax"] = round(max(region_seconds), 3)
    durations["writeSinkSeconds"] = [d.get("seconds") if d else None for d in delivered]
    return durations


def report_status(
    validated: dict | None, delivered: list[dict | None], *, conf: dict | None = None,
    regions: list[dict] | None = None, rejection: str | None = None, failed_tasks: list[str] | None = None,
) -> dict:
    """Write the image's status record, publish the terminal status; fail the run when the image FAILED."""
    if validated is None:
        return _report_rejected(conf or {}, rejection)
    ctx = TaskContext.from_validated(validated)
    selection = ctx.store.read_json(SELECTION) if ctx.store.exists(SELECTION) else None
    outputs = validated["outputs"]
    state, failed_sinks = image_status(selection, outputs, delivered)
    for failed in failed_sinks:
        key = sink_error_key(failed["index"])
        if ctx.store.exists(key):
            failed.update(ctx.store.read_json(key))
        else:
            failed["error"] = "not run: an upstream task failed"
    durations = _durations(validated, ctx.store.read_json(STAGES) if ctx.store.exists(STAGES) else {},
                           regions, delivered)
    reason = _failure_reason(selection, failed_sinks, failed_tasks or []) if state != "SUCCESS" else None
    record = {
        "jobId": ctx.request.job_id,
        "imageId": ctx.request.image_id,
        "status": state,
        "reason": reason,
        "counts": selection or {},
        "sinks": [d for d in delivered if d],
        "failedSinks": failed_sinks,
        "failedTasks": failed_tasks or [],
        "failedTiles": ctx.store.read_json(FAILED_TILES) if ctx.store.exists(FAILED_TILES) else [],
        "durations": durations,
        "durationSeconds": durations["totalSeconds"],
    }
    record["notificationError"] = status.publish_status(
        ctx.settings.status_topic_arn, ctx.settings.aws_conn_id, state, job_id=ctx.request.job_id,
        image_id=ctx.request.image_id, processing_duration=durations["totalSeconds"], reason=reason,
    )
    metrics.image_processed(validated, state, durations["totalSeconds"])
    record["statusRecord"] = ctx.store.write_json(STATUS_RECORD, record)
    log.info("Job %s: %s%s", ctx.request.job_id, state, f" ({reason})" if reason else "")
    if state == "FAILED":
        raise RuntimeError(f"FAILED: image {ctx.request.image_id}: {reason}; status record {record['statusRecord']}")
    return {k: record[k] for k in ("jobId", "status", "counts", "sinks", "failedSinks", "statusRecord")}


def _report_rejected(conf: dict, rejection: str | None) -> dict:
    """The request never validated: publish FAILED with whatever ids it carried, then fail."""
    from airflow_provider_osml.operators.settings import load_settings

    settings = load_settings()
    job_id = conf.get("jobId") if isinstance(conf.get("jobId"), str) else None
    urls = conf.get("imageUrls")
    image_url = urls[0] if isinstance(urls, list) and urls and isinstance(urls[0], str) else None
    reason = f"the ImageRequest was rejected: {rejection or 'see the validate_request task log'}"
    status.publish_status(settings.status_topic_arn, settings.aws_conn_id, status.FAILED, job_id=job_id,
                          image_id=f"{job_id}:{image_url}" if job_id and image_url else None, reason=reason)
    metrics.image_processed(None, status.FAILED, 0.0)
    raise RuntimeError(f"FAILED: {reason}")
