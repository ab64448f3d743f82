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
    with pytest.raises(SinkError, match="'Queue'.*File, S3, Kinesis"):
        create_sink({"type": "Queue"})


def test_file_sink_geojsonseq_writes_one_feature_per_line(tmp_path):
    features = [{"type": "Feature", "id": str(i), "properties": {"text": "a\nb", "n": i}} for i in range(5)]
    source = tmp_path / "features.geojson"
    source.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    sink = create_sink({"type": "File", "path": str(tmp_path / "out"), "format": "GeoJSONSeq"})
    target = sink.write("job-2", str(source))
    assert target == str(tmp_path / "out" / "job-2.geojsonl")
    lines = (tmp_path / "out" / "job-2.geojsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == features
    sink.write("job-2", str(source))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["job-2.geojsonl"]


def test_s3_sink_streams_a_large_collection_in_parts_with_the_owner_acl(moto_server, tmp_path):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="big-results")
    source = tmp_path / "features.geojson"
    feature = {"type": "Feature", "properties": {"pad": "x" * 1000}}
    with open(source, "w") as out:  # ~12 MB: three 5 MB parts
        out.write('{"type": "FeatureCollection", "features": [')
        out.write(", ".join(json.dumps({**feature, "id": i}) for i in range(12_000)))
        out.write("]}")
    sink = create_sink({"type": "S3", "bucket": "big-results", "prefix": "p"})
    sink.part_size = 5 * 1024 * 1024  # S3's smallest part, so the test file stays small
    sink.write("big", str(source))
    head = s3.head_object(Bucket="big-results", Key="p/big.geojson")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of 3 parts
    assert head["ContentLength"] == source.stat().st_size
    body = json.loads(s3.get_object(Bucket="big-results", Key="p/big.geojson")["Body"].read())
    assert [f["id"] for f in body["features"]] == list(range(12_000))
    # the upload's ExtraArgs reach S3 (ContentType is visible); moto does not record the canned ACL itself
    assert head["ContentType"] == "application/geo+json"
    assert sink.hook.extra_args["ACL"] == "bucket-owner-full-control"
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="big-results")
