from __future__ import annotations

import json

import boto3
import pytest

from airflow_provider_osml.sinks import SinkError, create_sink


@pytest.fixture
def collection(tmp_path):
    path = tmp_path / "features.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "a"}]}))
    return path


def test_file_sink_writes_job_file_and_overwrites_on_rerun(tmp_path, collection):
    sink = create_sink({"type": "File", "path": str(tmp_path / "out")})
    target = sink.write("job-1", str(collection))
    assert target == str(tmp_path / "out" / "job-1.geojson")
    assert json.loads((tmp_path / "out" / "job-1.geojson").read_text()) == json.loads(collection.read_text())
    sink.write("job-1", str(collection))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job-1.geojson"]


def test_s3_sink_uses_the_reference_key_and_one_object_per_job(moto_server, collection):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    sink = create_sink({"type": "S3", "bucket": "results", "prefix": "demo-job/"})
    assert sink.write("demo-job-0001", str(collection)) == "s3://results/demo-job/demo-job-0001.geojson"
    sink.write("demo-job-0001", str(collection))  # a re-run overwrites
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"]]
    assert keys == ["demo-job/demo-job-0001.geojson"]
    body = s3.get_object(Bucket="results", Key=keys[0])["Body"].read()
    assert json.loads(body) == json.loads(collection.read_text())


def test_s3_key_matches_upstream_vector():
    # upstream test: id fake/image/123 with prefix P gives P/123.geojson
    assert create_sink({"type": "S3", "bucket": "b", "prefix": "P"}, aws_conn_id=None).key("fake/image/123") == (
        "P/123.geojson"
    )


def test_s3_sink_to_a_missing_bucket_fails_loudly(moto_server, collection):
    sink = create_sink({"type": "S3", "bucket": "no-such-bucket", "prefix": ""})
    with pytest.raises(Exception, match="NoSuchBucket|does not exist"):
        sink.write("job", str(collection))


def test_unknown_sink_type_is_refused():
    with pytest.raises(SinkError, match="Kinesis"):
        create_sink({"type": "Kinesis", "stream": "s"})
