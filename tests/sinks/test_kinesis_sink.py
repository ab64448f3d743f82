"""The Kinesis sink against moto server, with partial PutRecords failures injected by a real proxy."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import boto3
import pytest

from airflow_provider_osml.sinks import create_sink
from airflow_provider_osml.sinks.kinesis import (
    MAX_BYTES_PER_CALL,
    MAX_BYTES_PER_RECORD,
    MAX_RECORDS_PER_CALL,
    KinesisDeliveryError,
    batch_calls,
    encode_records,
    put_all,
)
from tests.sinks.flaky_kinesis import FlakyKinesisProxy


def write_collection(path, count: int, pad: int = 0) -> list[dict]:
    features = [
        {"type": "Feature", "id": f"f{i}", "geometry": {"type": "Point", "coordinates": [i * 0.001, -i * 0.5]},
         "properties": {"n": i, "pad": "x" * pad, "nested": {"list": [1.5, None, True]}}}
        for i in range(count)
    ]
    with open(path, "w") as out:
        out.write('{"type": "FeatureCollection", "features": [')
        out.write(", ".join(json.dumps(f) for f in features))
        out.write("]}\n")
    return features


def read_stream(kinesis, stream: str) -> list[dict]:
    """Every record in the stream, decoded, shard by shard."""
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            records += [{"key": r["PartitionKey"], "data": json.loads(r["Data"])} for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


@pytest.fixture
def stream(moto_server) -> str:
    # moto's state outlives one server in the same process: a fresh stream per test
    name = f"detections-{uuid.uuid4().hex[:8]}"
    boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1").create_stream(
        StreamName=name, ShardCount=2
    )
    return name


@pytest.fixture
def kinesis(moto_server):
    return boto3.client("kinesis", endpoint_url=moto_server, region_name="us-east-1")


def test_every_feature_lands_once_although_a_share_of_put_records_entries_fail(
    kinesis, stream, moto_server, tmp_path, monkeypatch
):
    features = write_collection(tmp_path / "features.geojson", 1200)
    with FlakyKinesisProxy(moto_server, every=3) as proxy:
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_FLAKY",
            json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                        "extra": {"endpoint_url": proxy.url, "region_name": "us-east-1"}}),
        )
        sink = create_sink({"type": "Kinesis", "stream": stream}, aws_conn_id="aws_flaky")
        assert sink.write("job-7", str(tmp_path / "features.geojson")) == f"kinesis://{stream}"
    assert proxy.entries_failed == 167 + 167 + 67  # 1/3 of each first attempt
    assert sink.resent == proxy.entries_failed
    records = read_stream(kinesis, stream)
    assert {r["key"] for r in records} == {"job-7"}
    # osml 2.3.0+ format: one FeatureCollection per feature
    assert all(r["data"]["type"] == "FeatureCollection" and len(r["data"]["features"]) == 1 for r in records)
    delivered = Counter(f["id"] for r in records for f in r["data"]["features"])
    assert delivered == Counter(f["id"] for f in features)
    assert sorted((f for r in records for f in r["data"]["features"]), key=lambda f: f["properties"]["n"]) == features


def test_batch_size_puts_that_many_features_per_record(kinesis, stream, tmp_path):
    features = write_collection(tmp_path / "features.geojson", 23)
    sink = create_sink({"type": "Kinesis", "stream": stream, "batchSize": 5})
    sink.write("job", str(tmp_path / "features.geojson"))
    records = read_stream(kinesis, stream)
    assert sorted(len(r["data"]["features"]) for r in records) == [3, 5, 5, 5, 5]
    assert Counter(f["id"] for r in records for f in r["data"]["features"]) == Counter(f["id"] for f in features)


def test_a_missing_stream_fails_the_sink(moto_server, tmp_path):
    write_collection(tmp_path / "features.geojson", 2)
    with pytest.raises(Exception, match="ResourceNotFound"):
        create_sink({"type": "Kinesis", "stream": "nope"}).write("job", str(tmp_path / "features.geojson"))


def test_records_and_calls_stay_within_the_service_limits():
    big = {"type": "Feature", "properties": {"pad": "x" * 300_000}}
    records = list(encode_records([big] * 7, batch_size=100, partition_key="job"))
    # 3 features of ~300 KB fit in a 1 MB record, a 4th does not
    assert [len(json.loads(r)["features"]) for r in records] == [3, 3, 1]
    assert all(len(r) + 3 <= MAX_BYTES_PER_RECORD for r in records)
    calls = list(batch_calls([b"x" * 900_000] * 13, "job"))
    assert [len(c) for c in calls] == [5, 5, 3]
    assert all(sum(len(r) + 3 for r in c) <= MAX_BYTES_PER_CALL for c in calls)
    assert [len(c) for c in batch_calls([b"{}"] * 1001, "job")] == [MAX_RECORDS_PER_CALL, MAX_RECORDS_PER_CALL, 1]
    with pytest.raises(KinesisDeliveryError, match="over the 1 MB"):
        list(encode_records([{"id": "huge", "p": "x" * MAX_BYTES_PER_RECORD}], None, "job"))


def test_entries_failing_every_attempt_raise_after_backoff():
    sent, delays = [], []

    def always_failing(StreamName, Records):
        sent.append(len(Records))
        return {"FailedRecordCount": len(Records), "Records": [{"ErrorCode": "InternalFailure"}] * len(Records)}

    with pytest.raises(KinesisDeliveryError, match="3 record.* still failing after 4 attempts .InternalFailure"):
        put_all(always_failing, "s", [b"a", b"b", b"c"], "job", max_attempts=4, sleep=delays.append)
    assert sent == [3, 3, 3, 3]
    assert delays == [0.1, 0.2, 0.4]


def test_feature_stream_matches_json_load_across_chunk_boundaries(tmp_path, monkeypatch):
    from airflow_provider_osml.sinks import feature_stream

    features = write_collection(tmp_path / "features.geojson", 50, pad=37)
    monkeypatch.setattr(feature_stream, "_CHUNK", 101)
    assert list(feature_stream.iter_features(str(tmp_path / "features.geojson"))) == features
    (tmp_path / "empty.geojson").write_text('{"type": "FeatureCollection", "features": [ ]}')
    assert list(feature_stream.iter_features(str(tmp_path / "empty.geojson"))) == []
    (tmp_path / "cut.geojson").write_text('{"type": "FeatureCollection", "features": [{"a": 1}, {"b"')
    with pytest.raises(ValueError):
        list(feature_stream.iter_features(str(tmp_path / "cut.geojson")))


def test_sinks_assume_their_roles_through_sts(moto_server, stream, kinesis, tmp_path, monkeypatch):
    # the connection sends STS to moto too, so AssumeRole really runs and returns temporary (ASIA...) keys
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                    "extra": {"endpoint_url": moto_server, "region_name": "us-east-1",
                              "service_config": {"sts": {"endpoint_url": moto_server}}}}),
    )
    features = write_collection(tmp_path / "features.geojson", 3)
    role = "arn:aws:iam::123456789012:role/osml-writer"
    sink = create_sink({"type": "Kinesis", "stream": stream, "assumedRole": role})
    sink.write("job", str(tmp_path / "features.geojson"))
    assert sink.client._request_signer._credentials.access_key.startswith("ASIA")
    assert [f for r in read_stream(kinesis, stream) for f in r["data"]["features"]] == features

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    bucket = f"role-results-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3_sink = create_sink({"type": "S3", "bucket": bucket, "prefix": "", "role": role})
    s3_sink.write("job", str(tmp_path / "features.geojson"))
    assert s3_sink.hook.get_credentials().access_key.startswith("ASIA")
    assert json.loads(s3.get_object(Bucket=bucket, Key="job.geojson")["Body"].read())["features"] == features
