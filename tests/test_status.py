"""Statuses on SNS (read back through an SQS subscription), sinks and metrics, through real ``dag.test()`` runs."""

from __future__ import annotations

import json
import socket
import uuid

import boto3
import pytest

from tests.sinks.test_kinesis_sink import read_stream
from tests.test_dag import FailOnSomeTiles, request_for, states, status_record

pytestmark = pytest.mark.airflow


@pytest.fixture
def scene(tmp_path):
    from airflow_provider_osml.demo import make_demo_scene

    return make_demo_scene(tmp_path / "scene", width=1400, height=1100)


@pytest.fixture
def status_queue(moto_server, monkeypatch):
    """An SNS status topic (the deployment's ``status_topic_arn``) subscribed by an SQS queue."""
    sns = boto3.client("sns", endpoint_url=moto_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    suffix = uuid.uuid4().hex[:8]
    topic = sns.create_topic(Name=f"image-status-{suffix}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"image-status-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("AIRFLOW__OSML__STATUS_TOPIC_ARN", topic)

    def drain() -> list[dict]:
        """Status messages in arrival order: ``{"body", "attributes"}``."""
        messages = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                envelope = json.loads(message["Body"])
                attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                messages.append({"body": envelope["Message"], "attributes": attributes})
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    return drain


@pytest.fixture
def statsd_listener(monkeypatch):
    """A StatsD server stand-in: a UDP socket on 127.0.0.1 that Airflow's Stats sends to (tags in InfluxDB form)."""
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics.stats_utils import get_stats_factory

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    for key, value in {"STATSD_ON": "True", "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(sock.getsockname()[1]),
                       "STATSD_PREFIX": "airflow", "STATSD_INFLUXDB_ENABLED": "True"}.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    stats.initialize(factory=get_stats_factory(), export_legacy_names=False)

    def received() -> list[str]:
        lines = []
        while True:
            try:
                lines += sock.recv(65535).decode().splitlines()
            except TimeoutError:
                return lines

    try:
        yield received
    finally:
        stats.initialize(factory=NoStatsLogger, export_legacy_names=False)
        sock.close()


def metric(lines: list[str], name: str) -> list[tuple[dict, str]]:
    """``(tags, value|type)`` of every line for ``airflow.<name>``."""
    found = []
    for line in lines:
        key, _, value = line.partition(":")
        stat, *tags = key.split(",")
        if stat == f"airflow.{name}":
            found.append((dict(t.split("=", 1) for t in tags), value))
    return found


def test_success_run_publishes_started_in_progress_success_and_delivers_every_sink(
    airflow_db, model_runner_dag, scene, tmp_path, allowed_roots, moto_server, status_queue, statsd_listener
):
    from airflow_provider_osml.models import serve_model

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    kinesis = boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1")
    bucket, stream = f"results-{uuid.uuid4().hex[:8]}", f"detections-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    outputs = [
        {"type": "File", "path": str(tmp_path / "out"), "format": "GeoJSONSeq"},
        {"type": "S3", "bucket": bucket, "prefix": "jobs"},
        {"type": "Kinesis", "stream": stream, "batchSize": 4},
    ]
    with serve_model("blobs", threshold=scene.threshold) as server:
        dag_run = model_runner_dag.test(run_conf=request_for(scene, server.url, outputs, "status-ok"))
    assert str(dag_run.state) == "success", states(dag_run)

    lines = (tmp_path / "out" / "status-ok.geojsonl").read_text().splitlines()
    features = [json.loads(line) for line in lines]
    assert features
    assert json.loads(s3.get_object(Bucket=bucket, Key="jobs/status-ok.geojson")["Body"].read())["features"] == features
    records = read_stream(kinesis, stream)
    assert {r["key"] for r in records} == {"status-ok"} and max(len(r["data"]["features"]) for r in records) <= 4
    streamed = [f for r in records for f in r["data"]["features"]]
    assert sorted(json.dumps(f, sort_keys=True) for f in streamed) == sorted(
        json.dumps(f, sort_keys=True) for f in features
    )

    record = status_record("status-ok")
    assert record["status"] == "SUCCESS" and record["failedSinks"] == [] and len(record["sinks"]) == 3
    counts = record["counts"]
    assert counts["features"] == len(features) <= counts["featuresBeforeSelection"]
    assert counts["regions"] > 1 and counts["tiles"] == server.invocations and counts["failedTiles"] == 0
    durations = record["durations"]
    assert durations["totalSeconds"] > 0 and durations["inferRegionSecondsSum"] > 0
    assert {"planRegionsSeconds", "selectFeaturesSeconds"} <= set(durations)
    assert len(durations["writeSinkSeconds"]) == 3 and None not in durations["writeSinkSeconds"]

    messages = status_queue()
    image_id = f"status-ok:{scene.path}"
    assert [m["attributes"]["status"] for m in messages] == ["STARTED", "IN_PROGRESS", "SUCCESS"]
    for m in messages:
        status = m["attributes"]["status"]
        assert m["attributes"]["image_status"] == status
        assert m["attributes"]["job_id"] == "status-ok" and m["attributes"]["image_id"] == image_id
        assert m["body"].startswith(f"StatusMonitor update: {status} status-ok: ")
    assert "processing_duration" not in messages[0]["attributes"]  # 0 s: falsy attributes are omitted, as osml
    assert messages[2]["body"] == "StatusMonitor update: SUCCESS status-ok: Completed image processing"

    lines = statsd_listener()
    dims = {"Operation": "ImageProcessing", "ModelName": "http", "InputFormat": "GTiff"}
    assert metric(lines, "osml.ImageProcessing.Invocations") == [(dims, "1|c")]
    assert [tags for tags, value in metric(lines, "osml.ImageProcessing.Duration") if value.endswith("|ms")] == [dims]
    assert metric(lines, "osml.ImageProcessing.Errors") == []
    assert len(metric(lines, "osml.RegionProcessing.Invocations")) == counts["regions"]
    tile_counts = [int(v.split("|")[0]) for _, v in metric(lines, "osml.TileProcessing.Invocations")]
    assert sum(tile_counts) == counts["tiles"]
    model_calls = [int(v.split("|")[0]) for _, v in metric(lines, "osml.ModelInvocation.Invocations")]
    assert sum(model_calls) == counts["tiles"]  # a healthy model: one call per tile, no retries
    assert metric(lines, "osml.ModelInvocation.Retries") == [] and metric(lines, "osml.ModelInvocation.Errors") == []
    sinks = metric(lines, "osml.FeatureDissemination.Invocations")
    assert sorted(tags["SinkType"] for tags, _ in sinks) == ["File", "Kinesis", "S3"]


def test_broken_sink_and_failed_tiles_give_partial_naming_the_sink(
    airflow_db, model_runner_dag, scene, tmp_path, allowed_roots, moto_server, status_queue, monkeypatch
):
    from airflow_provider_osml.models.server import ModelServer

    monkeypatch.setenv("AIRFLOW__OSML__MODEL_RETRIES", "1")
    outputs = [{"type": "Kinesis", "stream": "no-such-stream"}, {"type": "File", "path": str(tmp_path / "out")}]
    with ModelServer(FailOnSomeTiles(scene.threshold)) as server:
        dag_run = model_runner_dag.test(run_conf=request_for(scene, server.url, outputs, "status-partial"))
    assert str(dag_run.state) == "success", states(dag_run)
    assert states(dag_run)[("write_sink", 0)] == "failed"
    assert states(dag_run)[("write_sink", 1)] == "success"
    assert json.loads((tmp_path / "out" / "status-partial.geojson").read_text())["features"]

    record = status_record("status-partial")
    assert record["status"] == "PARTIAL"
    [failed] = record["failedSinks"]
    assert failed["index"] == 0 and failed["sink"] == "Kinesis no-such-stream"
    assert "ResourceNotFoundException" in failed["error"]
    assert [s["type"] for s in record["sinks"]] == ["File"]
    assert record["failedTasks"] == ["write_sink_0"]

    messages = status_queue()
    assert [m["attributes"]["status"] for m in messages] == ["STARTED", "IN_PROGRESS", "PARTIAL"]
    final = messages[-1]
    assert final["attributes"]["image_status"] == "PARTIAL"
    assert int(final["attributes"]["processing_duration"]) >= 0
    assert "tile(s) failed; sink(s) failed: outputs[0] Kinesis no-such-stream" in final["body"]


def test_rejected_request_publishes_failed_only(
    airflow_db, model_runner_dag, scene, tmp_path, allowed_roots, moto_server, status_queue
):
    request = request_for(scene, "http://127.0.0.1:9/never-called", [{"type": "File", "path": str(tmp_path)}],
                          "status-bad")
    request["imageProcessorTileOverlap"] = 512
    dag_run = model_runner_dag.test(run_conf=request)
    assert str(dag_run.state) == "failed"
    assert states(dag_run)[("report_status", -1)] == "failed"
    messages = status_queue()
    assert [m["attributes"]["status"] for m in messages] == ["FAILED"]
    failed = messages[0]
    assert failed["attributes"]["job_id"] == "status-bad"
    assert failed["attributes"]["image_id"] == f"status-bad:{scene.path}"
    assert "rejected: imageProcessorTileOverlap" in failed["body"]
