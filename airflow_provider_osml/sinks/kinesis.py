"""``{"type": "Kinesis", "stream", "batchSize", "assumedRole"}``: features as records, ``PartitionKey`` = jobId.

Like osml 2.3.0+, each record is a FeatureCollection; it holds one feature, or up to ``batchSize`` features
when the request sets it (osml ignores ``batchSize``: spec 11 Q10). Unlike osml, entries that a partial
``put_records`` response marks as failed are sent again, with backoff, until every record is in the stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property

from airflow_provider_osml.sinks.feature_stream import iter_features

log = logging.getLogger(__name__)

# Kinesis Data Streams limits (PutRecords): per call, per record (data blob plus partition key)
MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD = 1024 * 1024


class KinesisDeliveryError(RuntimeError):
    """Records could not be put into the stream after every retry."""


def encode_records(features: Iterable[dict], batch_size: int | None, partition_key: str) -> Iterator[bytes]:
    """FeatureCollection records of up to ``batch_size`` features (1 if unset), each within the 1 MB record limit."""
    per_record = batch_size or 1
    budget = MAX_BYTES_PER_RECORD - len(partition_key.encode())
    head, tail = b'{"type": "FeatureCollection", "features": [', b"]}"
    pending: list[bytes] = []
    size = len(head) + len(tail)
    for feature in features:
        encoded = json.dumps(feature).encode()
        if len(head) + len(encoded) + len(tail) > budget:
            raise KinesisDeliveryError(
                f"feature {feature.get('id', '?')!r} is {len(encoded)} bytes of JSON: over the 1 MB Kinesis record limit"
            )
        extra = len(encoded) + (2 if pending else 0)
        if pending and (len(pending) >= per_record or size + extra > budget):
            yield head + b", ".join(pending) + tail
            pending, size, extra = [], len(head) + len(tail), len(encoded)
        pending.append(encoded)
        size += extra
    if pending:
        yield head + b", ".join(pending) + tail


def batch_calls(records: Iterable[bytes], partition_key: str) -> Iterator[list[bytes]]:
    """Group records into ``put_records`` calls within 500 records and 5 MB."""
    key_size = len(partition_key.encode())
    call: list[bytes] = []
    size = 0
    for record in records:
        if call and (len(call) >= MAX_RECORDS_PER_CALL or size + len(record) + key_size > MAX_BYTES_PER_CALL):
            yield call
            call, size = [], 0
        call.append(record)
        size += len(record) + key_size
    if call:
        yield call


def put_all(
    put_records: Callable[..., dict],
    stream: str,
    records: list[bytes],
    partition_key: str,
    *,
    max_attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Put ``records`` (one call's worth) and re-send only the entries a response marks as failed.

    Returns the number of re-sent entries. Raises :class:`KinesisDeliveryError` when some are still failing
    after ``max_attempts`` calls.
    """
    remaining = records
    resent = 0
    for attempt in range(max_attempts):
        response = put_records(
            StreamName=stream, Records=[{"Data": data, "PartitionKey": partition_key} for data in remaining]
        )
        if not response.get("FailedRecordCount"):
            return resent
        entries = response["Records"]
        failed = [(data, entry) for data, entry in zip(remaining, entries, strict=True) if entry.get("ErrorCode")]
        codes = sorted({entry["ErrorCode"] for _, entry in failed})
        remaining = [data for data, _ in failed]
        resent += len(remaining)
        if attempt + 1 < max_attempts:
            delay = min(max_delay, base_delay * 2**attempt)
            log.warning("Kinesis %s: %d of %d record(s) failed (%s); retrying in %.1fs", stream, len(remaining),
                        len(entries), ", ".join(codes), delay)
            sleep(delay)
    raise KinesisDeliveryError(
        f"stream {stream}: {len(remaining)} record(s) still failing after {max_attempts} attempts ({', '.join(codes)})"
    )


class KinesisSink:
    def __init__(
        self, *, stream: str, batch_size: int | None = None, role: str | None = None, aws_conn_id: str | None
    ) -> None:
        self.stream = stream
        self.batch_size = batch_size
        self.role = role
        self.aws_conn_id = aws_conn_id
        self.resent = 0

    def target(self, job_id: str) -> str:
        return f"kinesis://{self.stream}"

    @cached_property
    def client(self):
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from airflow_provider_osml.hooks.aws_roles import assume_role

        return assume_role(AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="kinesis"), self.role).get_conn()

    def check_stream(self) -> None:
        # osml's pre-check: only ACTIVE or UPDATING streams accept records
        status = self.client.describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]
        if status["StreamStatus"] not in ("ACTIVE", "UPDATING"):
            raise KinesisDeliveryError(f"stream {self.stream} is {status['StreamStatus']}, not ACTIVE")

    def write(self, job_id: str, geojson_file: str) -> str:
        """Put every feature of the file into the stream; a re-run sends them again (streams are append-only)."""
        self.check_stream()
        records = encode_records(iter_features(geojson_file), self.batch_size, job_id)
        count = 0
        for call in batch_calls(records, job_id):
            self.resent += put_all(self.client.put_records, self.stream, call, job_id)
            count += len(call)
        log.info("Kinesis %s: %d record(s) put, %d re-sent after partial failures", self.stream, count, self.resent)
        return self.target(job_id)
