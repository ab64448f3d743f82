"""``write_sink`` and ``report_status``: deliver the selected features and report the image's status."""

from __future__ import annotations

import logging
import time

from airflow_provider_osml.operators.context import (
    FAILED_TILES,
    SELECTED_FEATURES,
    SELECTION,
    STATUS_RECORD,
    TaskContext,
)

log = logging.getLogger(__name__)


# --- write_sink ------------------------------------------------------------------------------------


def write_sink(validated: dict, output: dict) -> dict:
    """Deliver the selected FeatureCollection to one sink; a re-run overwrites the same object."""
    from airflow_provider_osml.sinks import create_sink

    ctx = TaskContext.from_validated(validated)
    sink = create_sink(output, aws_conn_id=ctx.settings.aws_conn_id)
    with ctx.store.local_file(SELECTED_FEATURES) as local:
        target = sink.write(ctx.request.job_id, local)
    log.info("Job %s: features written to %s", ctx.request.job_id, target)
    return {"type": output["type"], "target": target}


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


def report_status(validated: dict | None, delivered: list[dict | None]) -> dict:
    """Write the image's status record; fail the run when the image FAILED."""
    if validated is None:
        raise RuntimeError("FAILED: the ImageRequest was rejected (see the validate_request task log)")
    ctx = TaskContext.from_validated(validated)
    selection = ctx.store.read_json(SELECTION) if ctx.store.exists(SELECTION) else None
    outputs = validated["outputs"]
    status, failed_sinks = image_status(selection, outputs, delivered)
    record = {
        "jobId": ctx.request.job_id,
        "imageId": ctx.request.image_id,
        "status": status,
        "counts": selection or {},
        "sinks": [d for d in delivered if d],
        "failedSinks": failed_sinks,
        "failedTiles": ctx.store.read_json(FAILED_TILES) if ctx.store.exists(FAILED_TILES) else [],
        "durationSeconds": round(time.time() - validated["startedAt"], 3),
    }
    record["statusRecord"] = ctx.store.write_json(STATUS_RECORD, record)
    log.info("Job %s: %s", ctx.request.job_id, status)
    if status == "FAILED":
        raise RuntimeError(f"FAILED: image {ctx.request.image_id}; status record {record['statusRecord']}")
    return {k: record[k] for k in ("jobId", "status", "counts", "sinks", "failedSinks", "statusRecord")}
