"""Result sinks: where the selected FeatureCollection of an image goes."""

from __future__ import annotations

from airflow_provider_osml.sinks.file import FileSink
from airflow_provider_osml.sinks.kinesis import KinesisSink
from airflow_provider_osml.sinks.s3 import S3Sink

SINK_TYPES = {"File": FileSink, "S3": S3Sink, "Kinesis": KinesisSink}


class SinkError(RuntimeError):
    """A sink could not deliver the features."""


def create_sink(output: dict, *, aws_conn_id: str | None = "aws_default"):
    """Build the sink for one validated ``outputs`` entry."""
    sink_type = output["type"]
    if sink_type == "File":
        return FileSink(path=output["path"], format=output.get("format") or "GeoJSON")
    if sink_type == "S3":
        return S3Sink(
            bucket=output["bucket"], prefix=output.get("prefix", ""), role=output.get("role"), aws_conn_id=aws_conn_id
        )
    if sink_type == "Kinesis":
        return KinesisSink(
            stream=output["stream"],
            batch_size=output.get("batchSize"),
            role=output.get("assumedRole"),
            aws_conn_id=aws_conn_id,
        )
    raise SinkError(f"outputs: unknown sink type {sink_type!r} (available: {', '.join(SINK_TYPES)})")


def describe_sink(output: dict) -> str:
    """A short name for a sink in logs and status messages, e.g. ``S3 s3://bucket/prefix``."""
    if output["type"] == "S3":
        return f"S3 s3://{output['bucket']}/{output.get('prefix', '')}"
    if output["type"] == "Kinesis":
        return f"Kinesis {output['stream']}"
    return f"File {output.get('path')}"
