"""Image status notifications on SNS, with osml's statuses, body and message attributes (spec 6.2).

STARTED (request accepted), IN_PROGRESS (regions planned), then exactly one of SUCCESS, PARTIAL or FAILED from
the final ``all_done`` task, which runs whatever failed before it (osml can send no terminal message: 11 Q6).
Without a topic (``[osml] status_topic_arn``) nothing is published, as osml skips an unset ``IMAGE_STATUS_TOPIC``.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

STARTED, IN_PROGRESS, SUCCESS, PARTIAL, FAILED = "STARTED", "IN_PROGRESS", "SUCCESS", "PARTIAL", "FAILED"
STATUSES = (STARTED, IN_PROGRESS, SUCCESS, PARTIAL, FAILED)
TERMINAL = (SUCCESS, PARTIAL, FAILED)

_MESSAGES = {STARTED: "Started image request", IN_PROGRESS: "Processing regions"}
_COMPLETED = "Completed image processing"


def status_message(
    status: str,
    *,
    job_id: str | None,
    image_id: str | None,
    processing_duration: float | None = None,
    reason: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The SNS body and string attributes osml 2.3.0+ publishes; falsy attributes are left out, as osml's."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    message = _MESSAGES.get(status, _COMPLETED)
    if reason:
        message = f"{message}: {reason}"
    attributes = {
        "status": status,
        "image_status": status,  # osml keeps the 2.1.1 name for compatibility
        "job_id": job_id,
        "image_id": image_id,
        "processing_duration": str(int(processing_duration)) if processing_duration else None,
    }
    attributes = {k: v for k, v in attributes.items() if v and v != "0"}
    return f"StatusMonitor update: {status} {job_id}: {message}", attributes


def publish_status(
    topic_arn: str | None, aws_conn_id: str | None, status: str, *, job_id: str | None, image_id: str | None,
    processing_duration: float | None = None, reason: str | None = None,
) -> str | None:
    """Publish one status message; returns an error text instead of raising (a notification never fails an image)."""
    body, attributes = status_message(
        status, job_id=job_id, image_id=image_id, processing_duration=processing_duration, reason=reason
    )
    if not topic_arn:
        log.info("%s (no status topic configured: not published)", body)
        return None
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    try:
        SnsHook(aws_conn_id=aws_conn_id).publish_to_target(topic_arn, body, message_attributes=attributes)
    except Exception as exc:
        log.warning("Status %s for job %s not published to %s: %s", status, job_id, topic_arn, exc)
        return f"{type(exc).__name__}: {exc}"
    log.info("%s (published to %s)", body, topic_arn)
    return None
