"""Status rules without Airflow runs: image status, SNS message shape, permanent sink errors, metric names."""

from __future__ import annotations

import pytest

from airflow_provider_osml.operators.delivery import image_status, is_permanent
from airflow_provider_osml.status import status_message

OUTPUTS = [{"type": "S3", "bucket": "b"}, {"type": "File", "path": "/x"}]
SELECTION = {"failedTiles": 0, "tiles": 4, "features": 10}


def test_image_status_from_selection_and_sinks():
    ok = {"type": "S3", "target": "s3://b/j.geojson"}
    assert image_status(SELECTION, OUTPUTS, [ok, ok]) == ("SUCCESS", [])
    assert image_status(SELECTION, OUTPUTS, [None, ok]) == ("PARTIAL", [{"index": 0, "type": "S3"}])
    assert image_status({**SELECTION, "failedTiles": 1}, OUTPUTS, [ok, ok]) == ("PARTIAL", [])
    assert image_status(SELECTION, OUTPUTS, [None, None])[0] == "FAILED"  # nothing delivered anywhere
    assert image_status(None, OUTPUTS, [])[0] == "FAILED"  # selection never finished


def test_status_message_matches_osml_and_omits_falsy_attributes():
    body, attributes = status_message("PARTIAL", job_id="j", image_id="j:s3://i/x.ntf", processing_duration=12.7,
                                      reason="1 of 4 tile(s) failed")
    assert body == "StatusMonitor update: PARTIAL j: Completed image processing: 1 of 4 tile(s) failed"
    assert attributes == {"status": "PARTIAL", "image_status": "PARTIAL", "job_id": "j",
                          "image_id": "j:s3://i/x.ntf", "processing_duration": "12"}
    body, attributes = status_message("STARTED", job_id="j", image_id=None, processing_duration=0.4)
    assert body == "StatusMonitor update: STARTED j: Started image request"
    assert attributes == {"status": "STARTED", "image_status": "STARTED", "job_id": "j"}
    with pytest.raises(ValueError, match="status must be one of"):
        status_message("DONE", job_id="j", image_id=None)


def test_missing_buckets_and_streams_are_permanent_errors():
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError

    missing = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no"}}, "DescribeStreamSummary")
    throttled = ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "PutObject")
    assert is_permanent(missing) and not is_permanent(throttled)
    assert is_permanent(S3UploadFailedError("Failed to upload: An error occurred (NoSuchBucket) when calling ..."))
    assert not is_permanent(OSError("connection reset"))


def test_metrics_use_osml_operation_names_and_never_raise(monkeypatch):
    from airflow_provider_osml import metrics

    sent = []

    class Recorder:
        def timing(self, name, value, tags=None):
            sent.append(("timing", name, value.total_seconds(), tags))

        def incr(self, name, count, tags=None):
            sent.append(("incr", name, count, tags))

    monkeypatch.setattr(metrics, "_stats", lambda: Recorder())
    validated = {"request": {"imageProcessor": {"name": "my-endpoint", "type": "SM_ENDPOINT"}},
                 "image": {"driver": "NITF"}}
    with pytest.raises(KeyError), metrics.operation(metrics.REGION_PROCESSING, metrics.dimensions(validated)):
        raise KeyError("boom")
    tags = {"Operation": "RegionProcessing", "ModelName": "my-endpoint", "InputFormat": "NITF"}
    assert [(kind, name, tags_) for kind, name, _, tags_ in sent] == [
        ("timing", "osml.RegionProcessing.Duration", tags),
        ("incr", "osml.RegionProcessing.Invocations", tags),
        ("incr", "osml.RegionProcessing.Errors", tags),
    ]

    monkeypatch.setattr(metrics, "_stats", lambda: 1 / 0)
    metrics.emit(metrics.IMAGE_PROCESSING, invocations=1)  # a broken backend is logged, not raised


def test_failure_reason_names_failed_tasks_tiles_and_sinks():
    from airflow_provider_osml.operators.delivery import _failure_reason

    assert _failure_reason(None, [], ["select_features"]) == (
        "no features were selected: select_features failed (see the task log)"
    )
    sinks = [{"index": 1, "type": "S3", "sink": "S3 s3://b/p"}]
    assert _failure_reason({**SELECTION, "failedTiles": 2}, sinks, ["write_sink_1"]) == (
        "2 of 4 tile(s) failed; sink(s) failed: outputs[1] S3 s3://b/p"
    )
