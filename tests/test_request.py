"""Tests for the ImageRequest parser and its JSON Schema (spec 1.1 to 1.5, 11)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_provider_osml.request import (
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    FeatureDistillation,
    ImageRequest,
    InvalidImageRequest,
    image_request_schema,
    parse_image_request,
)

SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(image_request_schema())


@pytest.fixture(autouse=True)
def _no_roots_from_env(monkeypatch):
    for name in ("OSML_ALLOWED_ROOTS", "AIRFLOW__OSML__ALLOWED_ROOTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def root(tmp_path) -> Path:
    """The allowed root; ``outside`` beside it is not allowed."""
    root = (tmp_path / "root").resolve()
    root.mkdir()
    (root / "scene.ntf").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    return root


def parse(conf: Any, root: Path) -> ImageRequest:
    return parse_image_request(conf, allowed_roots=[str(root)])


# --- samples -------------------------------------------------------------------------------------


def spec_sample() -> dict:
    """Spec 1.4, verbatim: valid in every osml version."""
    return {
        "jobName": "demo-job",
        "jobId": "demo-job-0001",
        "jobArn": "arn:aws:oversightml:us-west-2:123456789012:ipj/demo-job",
        "imageUrls": ["s3://my-imagery/scene-42.ntf"],
        "imageReadRole": "arn:aws:iam::123456789012:role/ImageReader",
        "outputs": [
            {"type": "S3", "bucket": "my-results", "prefix": "demo-job/"},
            {"type": "Kinesis", "stream": "my-results-stream", "batchSize": 1000},
        ],
        "imageProcessor": {
            "name": "aircraft-detector",
            "type": "SM_ENDPOINT",
            "assumedRole": "arn:aws:iam::123456789012:role/ModelInvoker",
        },
        "imageProcessorTileSize": 512,
        "imageProcessorTileOverlap": 128,
        "imageProcessorTileFormat": "NITF",
        "imageProcessorTileCompression": "J2K",
        "featureProperties": [
            {"modelMetadata": {"modelName": "aircraft", "ontologyName": "demo", "ontologyVersion": "1.0"}}
        ],
        "postProcessing": [
            {
                "step": "FEATURE_DISTILLATION",
                "algorithm": {
                    "algorithmType": "SOFT_NMS",
                    "iouThreshold": 0.6,
                    "skipBoxThreshold": 0.05,
                    "sigma": 0.1,
                },
            }
        ],
    }


def integ_sample(root: Path) -> dict:
    """The upstream integration request (osml-ecosystem.md 4.1) with the image under the allowed root."""
    job_id = "0123456789abcdef0123456789abcdef"
    return {
        "jobName": f"test-{job_id}",
        "jobId": job_id,
        "imageUrls": [str(root / "scene.ntf")],
        "outputs": [
            {"type": "S3", "bucket": "osml-test-results", "prefix": f"test-{job_id}/"},
            {"type": "Kinesis", "stream": "mr-stream", "batchSize": 1000},
            {"type": "File", "path": str(root / "results")},
        ],
        "imageProcessor": {"name": "centerpoint", "type": "SM_ENDPOINT"},
        "imageProcessorTileSize": 512,
        "imageProcessorTileOverlap": 128,
        "imageProcessorTileFormat": "GTIFF",
        "imageProcessorTileCompression": "NONE",
        "postProcessing": [
            {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.75}}
        ],
        "regionOfInterest": None,
        "imageProcessorParameters": {"TargetVariant": "flood-50"},
    }


def minimal_sample(root: Path) -> dict:
    return {
        "jobId": "job-1",
        "imageUrls": [str(root / "scene.ntf")],
        "imageProcessor": {"name": "detector"},
        "outputs": [{"type": "File", "path": str(root / "results")}],
    }


def base_sample(root: Path) -> dict:
    """Valid, with one output of each type, so the invalid table can break one field at a time."""
    return {
        "jobId": "job-1",
        "imageUrls": [str(root / "scene.ntf")],
        "imageProcessor": {"name": "aircraft-detector", "type": "SM_ENDPOINT"},
        "imageProcessorTileSize": 512,
        "imageProcessorTileOverlap": 128,
        "outputs": [
            {"type": "File", "path": str(root / "results")},
            {"type": "S3", "bucket": "my-results", "prefix": "p/"},
            {"type": "Kinesis", "stream": "my-stream", "batchSize": 10},
        ],
        "featureProperties": [{"a": 1}, {"b": 2}],
        "postProcessing": [
            {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.5}}
        ],
    }


# --- valid requests ------------------------------------------------------------------------------


def test_spec_sample(root):
    request = parse(spec_sample(), root)
    assert request.job_id == "demo-job-0001"
    assert request.job_name == "demo-job"
    assert request.image_id == "demo-job-0001:s3://my-imagery/scene-42.ntf"
    assert request.image_read_role == "arn:aws:iam::123456789012:role/ImageReader"
    assert (request.model_name, request.model_invoke_mode) == ("aircraft-detector", "SM_ENDPOINT")
    assert request.model_assumed_role == "arn:aws:iam::123456789012:role/ModelInvoker"
    assert (request.tile_size, request.tile_overlap) == (512, 128)
    assert (request.tile_format, request.tile_compression) == ("NITF", "J2K")
    assert request.outputs == (
        {"type": "S3", "bucket": "my-results", "prefix": "demo-job/"},
        {"type": "Kinesis", "stream": "my-results-stream", "batchSize": 1000},
    )
    assert request.feature_properties[0]["modelMetadata"]["modelName"] == "aircraft"
    assert request.post_processing == FeatureDistillation("SOFT_NMS", 0.6, 0.05, 0.1)


def test_spec_sample_needs_no_allowed_roots():
    assert parse_image_request(spec_sample(), allowed_roots=[]).image_url == "s3://my-imagery/scene-42.ntf"


def test_integ_sample(root):
    request = parse(integ_sample(root), root)
    assert (request.tile_format, request.tile_compression) == ("GTIFF", "NONE")
    assert request.model_parameters == {"TargetVariant": "flood-50"}
    assert request.region_of_interest is None
    assert request.post_processing == FeatureDistillation("NMS", 0.75)
    assert request.outputs[2] == {"type": "File", "path": str(root / "results")}


def test_defaults(root):
    request = parse(minimal_sample(root), root)
    assert (
        (request.tile_size, request.tile_overlap) == (DEFAULT_TILE_SIZE, DEFAULT_TILE_OVERLAP) == (1024, 50)
    )
    assert (request.tile_format, request.tile_compression) == ("NITF", "NONE")
    assert request.tiling_strategy == "VARIABLE_OVERLAP"
    assert request.model_invoke_mode == "SM_ENDPOINT"
    assert request.region_size is None and request.region_of_interest is None
    assert request.job_name is None and request.image_read_role is None and request.model_assumed_role is None
    assert request.model_parameters == {} and request.feature_properties == ()
    assert request.post_processing == FeatureDistillation("NMS", 0.75)


def test_empty_post_processing_is_default_nms(root):
    request = parse(dict(minimal_sample(root), postProcessing=[]), root)
    assert request.post_processing == FeatureDistillation()


def test_null_means_absent(root):
    nulls = dict.fromkeys(
        [
            "jobName", "jobArn", "imageReadRole", "imageProcessorParameters", "imageProcessorTileSize",
            "imageProcessorTileOverlap", "imageProcessorTileFormat", "imageProcessorTileCompression",
            "tilingStrategy", "regionSize", "regionOfInterest", "outputBucket", "outputPrefix",
            "featureProperties", "postProcessing",
        ]
    )  # fmt: skip
    conf = dict(minimal_sample(root), **nulls)
    conf["imageProcessor"] = {"name": "detector", "type": None, "assumedRole": None}
    assert parse(conf, root) == parse(minimal_sample(root), root)


def test_legacy_output_bucket_and_prefix(root):
    conf = dict(minimal_sample(root), outputBucket="legacy-bucket", outputPrefix="legacy/")
    del conf["outputs"]
    assert parse(conf, root).outputs == ({"type": "S3", "bucket": "legacy-bucket", "prefix": "legacy/"},)
    conf["outputs"] = []
    assert parse(conf, root).outputs == ({"type": "S3", "bucket": "legacy-bucket", "prefix": "legacy/"},)


def test_outputs_win_over_legacy_pair(root):
    conf = dict(minimal_sample(root), outputBucket="legacy-bucket", outputPrefix="legacy/")
    assert parse(conf, root).outputs == ({"type": "File", "path": str(root / "results")},)


@pytest.mark.parametrize(("size", "overlap"), [("512", "128"), (" 256 ", 0), (512.0, 64.0), ("+64", "0")])
def test_numeric_tile_values(root, size, overlap):
    request = parse(
        dict(minimal_sample(root), imageProcessorTileSize=size, imageProcessorTileOverlap=overlap), root
    )
    assert (request.tile_size, request.tile_overlap) == (int(float(size)), int(float(overlap)))


def test_our_extensions(root):
    conf = dict(
        minimal_sample(root),
        tilingStrategy="VARIABLE_TILE",
        regionSize=2048,
        imageProcessorTileSize=2048,
        imageProcessorTileOverlap=0,
        regionOfInterest="MULTIPOLYGON(((10 10, 11 10, 11 11, 10 10)), ((20 20, 21 20, 21 21, 20 20)))",
        postProcessing=[{"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NONE"}}],
    )
    request = parse(conf, root)
    assert request.tiling_strategy == "VARIABLE_TILE"
    assert request.region_size == 2048 == request.tile_size
    assert request.region_of_interest.startswith("MULTIPOLYGON")
    assert request.post_processing.algorithm_type == "NONE"


def test_http_endpoint_on_loopback(root):
    for url in (
        "http://127.0.0.1:8080/invocations",
        "http://localhost:9000",
        "https://[::1]/x",
        "https://models.example.com/m",
    ):
        conf = dict(minimal_sample(root), imageProcessor={"name": url, "type": "HTTP_ENDPOINT"})
        request = parse(conf, root)
        assert (request.model_name, request.model_invoke_mode) == (url, "HTTP_ENDPOINT")


def test_model_parameters(root):
    params = {"ContentType": "application/json", "CustomAttributes": "a=1", "InferenceComponentName": "ic"}
    assert parse(dict(minimal_sample(root), imageProcessorParameters=params), root).model_parameters == params


def test_file_urls_become_paths(root):
    (root / "a b.ntf").write_bytes(b"")
    conf = minimal_sample(root)
    conf["imageUrls"] = [f"file://{root}/a%20b.ntf", f"file://localhost{root}/scene.ntf"]
    conf["outputs"] = [{"type": "File", "path": f"file://{root}/new/dir"}]
    request = parse(conf, root)
    assert request.image_urls == (str(root / "a b.ntf"), str(root / "scene.ntf"))
    assert request.image_id == f"job-1:{root / 'a b.ntf'}"
    assert request.outputs == ({"type": "File", "path": str(root / "new" / "dir")},)


def test_paths_inside_the_root(root):
    (root / "sub").mkdir()
    (root / "alias").symlink_to(root / "sub")
    (root / "sub" / "x.ntf").write_bytes(b"")
    conf = minimal_sample(root)
    conf["imageUrls"] = [f"{root}/alias/x.ntf", f"{root}/sub/../scene.ntf"]
    conf["outputs"] = [{"type": "File", "path": str(root / "does" / "not" / "exist" / "yet")}]
    assert parse(conf, root).image_urls == (f"{root}/alias/x.ntf", f"{root}/sub/../scene.ntf")


def test_allowed_roots_from_env(root, tmp_path, monkeypatch):
    monkeypatch.setenv("OSML_ALLOWED_ROOTS", os.pathsep.join([str(tmp_path / "elsewhere"), str(root)]))
    assert parse_image_request(minimal_sample(root)).job_id == "job-1"


def test_allowed_root_given_through_a_symlink(root, tmp_path):
    (tmp_path / "root-link").symlink_to(root)
    assert (
        parse_image_request(minimal_sample(root), allowed_roots=[str(tmp_path / "root-link")]).job_id
        == "job-1"
    )


def test_no_roots_rejects_local_paths(root):
    with pytest.raises(InvalidImageRequest) as info:
        parse_image_request(minimal_sample(root))
    assert info.value.field == "imageUrls[0]"
    assert "OSML_ALLOWED_ROOTS" in str(info.value)


def test_unknown_top_level_keys_are_ignored(root):
    assert parse(dict(minimal_sample(root), randomKey="x"), root) == parse(minimal_sample(root), root)


def test_parse_does_not_modify_its_input(root):
    conf = integ_sample(root)
    before = copy.deepcopy(conf)
    request = parse(conf, root)
    request.outputs[0]["bucket"] = "changed"
    assert conf == before


def test_request_is_frozen(root):
    request = parse(minimal_sample(root), root)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.job_id = "other"  # type: ignore[misc]


def test_feature_distillation_keys():
    snake = {"algorithm_type": "SOFT_NMS", "iou_threshold": 0.5, "skip_box_threshold": 0.01, "sigma": 0.2}
    camel = {"algorithmType": "SOFT_NMS", "iouThreshold": 0.5, "skipBoxThreshold": 0.01, "sigma": 0.2}
    assert FeatureDistillation.from_dict(snake) == FeatureDistillation.from_dict(camel)
    assert FeatureDistillation.from_dict(camel).to_dict() == camel
    nms = FeatureDistillation.from_dict({"algorithmType": "NMS", "polygonIou": True})
    assert nms == FeatureDistillation("NMS", polygon_iou=True)
    assert nms.to_dict() == {"algorithmType": "NMS", "iouThreshold": 0.75, "polygonIou": True}
    assert FeatureDistillation("NONE").to_dict() == {"algorithmType": "NONE"}


def round_trip_samples(root: Path) -> list[dict]:
    sample = base_sample(root)
    sample.update(
        jobName="n",
        imageReadRole="arn:aws:iam::1:role/r",
        regionSize=4096,
        tilingStrategy="VARIABLE_TILE",
        regionOfInterest="POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))",
        imageProcessorParameters={"TargetVariant": "v1"},
    )
    sample["outputs"][1]["role"] = "arn:aws:iam::1:role/w"
    sample["outputs"][2]["assumedRole"] = "arn:aws:iam::1:role/k"
    sample["postProcessing"][0]["algorithm"]["polygonIou"] = True
    return [spec_sample(), integ_sample(root), minimal_sample(root), base_sample(root), sample]


def test_to_dict_round_trip(root):
    for sample in round_trip_samples(root):
        request = parse(sample, root)
        as_dict = json.loads(json.dumps(request.to_dict()))
        assert parse(as_dict, root) == request
        assert ImageRequest.from_dict(as_dict, allowed_roots=[str(root)]) == request


def test_to_dict_includes_defaults(root):
    as_dict = parse(minimal_sample(root), root).to_dict()
    assert as_dict["imageProcessor"] == {"name": "detector", "type": "SM_ENDPOINT"}
    assert as_dict["imageProcessorTileSize"] == 1024
    assert as_dict["imageProcessorTileOverlap"] == 50
    assert as_dict["imageProcessorTileFormat"] == "NITF"
    assert as_dict["imageProcessorTileCompression"] == "NONE"
    assert as_dict["tilingStrategy"] == "VARIABLE_OVERLAP"
    assert as_dict["postProcessing"] == [
        {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.75}}
    ]


def test_exception_message_and_pickle(root):
    conf = dict(minimal_sample(root), imageProcessorTileSize=512, imageProcessorTileOverlap=512)
    with pytest.raises(InvalidImageRequest) as info:
        parse(conf, root)
    assert str(info.value) == (
        "imageProcessorTileOverlap: must be >= 0 and less than imageProcessorTileSize (512), got 512"
    )
    assert isinstance(info.value, ValueError)
    copied = pickle.loads(pickle.dumps(info.value))
    assert (copied.field, copied.reason, str(copied)) == (
        info.value.field,
        info.value.reason,
        str(info.value),
    )


def test_case_hint(root):
    with pytest.raises(InvalidImageRequest, match=r"did you mean 'GTIFF'"):
        parse(dict(minimal_sample(root), imageProcessorTileFormat="gtiff"), root)


# --- invalid requests ----------------------------------------------------------------------------

Mutation = Callable[[dict, Path], Any]


def _steps(path: str) -> list[str | int]:
    return [int(tok[1:-1]) if tok.startswith("[") else tok for tok in re.findall(r"\[\d+\]|[^.\[\]]+", path)]


def put(path: str, value: Any) -> Mutation:
    """Set ``path`` (e.g. ``outputs[1].bucket``); a callable value gets the allowed root."""

    def mutate(conf: dict, root: Path) -> None:
        *parents, last = _steps(path)
        target: Any = conf
        for step in parents:
            target = target[step]
        target[last] = value(root) if callable(value) else value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(conf: dict, root: Path) -> None:
        *parents, last = _steps(path)
        target: Any = conf
        for step in parents:
            target = target[step]
        del target[last]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(conf: dict, root: Path) -> None:
        for mutation in mutations:
            mutation(conf, root)

    return mutate


def symlink_escape(conf: dict, root: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    conf["imageUrls"] = [str(root / "escape" / "x.ntf")]


def outside(name: str) -> Callable[[Path], str]:
    return lambda root: str(root.parent / "outside" / name)


def http(url: str) -> Mutation:
    return put("imageProcessor", {"name": url, "type": "HTTP_ENDPOINT"})


def algorithm(**values: Any) -> Mutation:
    return put("postProcessing", [{"step": "FEATURE_DISTILLATION", "algorithm": values}])


ALGO = "postProcessing[0].algorithm"

INVALID = [
    # identity
    pytest.param(drop("jobId"), "jobId", id="jobId-missing"),
    pytest.param(put("jobId", ""), "jobId", id="jobId-empty"),
    pytest.param(put("jobId", "a/b"), "jobId", id="jobId-slash"),
    pytest.param(put("jobId", "a\\b"), "jobId", id="jobId-backslash"),
    pytest.param(put("jobId", "x..y"), "jobId", id="jobId-dotdot"),
    pytest.param(put("jobId", "a\nb"), "jobId", id="jobId-control-char"),
    pytest.param(put("jobId", "x" * 257), "jobId", id="jobId-too-long"),
    pytest.param(put("jobId", 42), "jobId", id="jobId-not-string"),
    pytest.param(put("jobArn", 5), "jobArn", id="jobArn-not-string"),
    pytest.param(lambda conf, root: [conf], "$", id="request-not-object"),
    # image URLs
    pytest.param(drop("imageUrls"), "imageUrls", id="imageUrls-missing"),
    pytest.param(put("imageUrls", "s3://b-1/k"), "imageUrls", id="imageUrls-string"),
    pytest.param(put("imageUrls", []), "imageUrls", id="imageUrls-empty"),
    pytest.param(put("imageUrls", [""]), "imageUrls[0]", id="imageUrls-empty-string"),
    pytest.param(put("imageUrls", [42]), "imageUrls[0]", id="imageUrls-not-string"),
    pytest.param(put("imageUrls", ["/vsicurl/http://example.com/x.tif"]), "imageUrls[0]", id="vsicurl"),
    pytest.param(put("imageUrls", ["/VSIS3/bucket/key.tif"]), "imageUrls[0]", id="vsis3-uppercase"),
    pytest.param(put("imageUrls", lambda r: [f"{r}/vsizip/a.zip/x.tif"]), "imageUrls[0]", id="vsi-segment"),
    pytest.param(
        put("imageUrls", lambda r: [f"file://{outside('x.ntf')(r)}"]), "imageUrls[0]", id="file-url-outside"
    ),
    pytest.param(
        put("imageUrls", lambda r: [f"file://host{r}/scene.ntf"]), "imageUrls[0]", id="file-url-host"
    ),
    pytest.param(put("imageUrls", ["scene.ntf"]), "imageUrls[0]", id="relative-path"),
    pytest.param(put("imageUrls", lambda r: [f"{r}/../outside/x.ntf"]), "imageUrls[0]", id="dotdot-escape"),
    pytest.param(symlink_escape, "imageUrls[0]", id="symlink-escape"),
    pytest.param(put("imageUrls", ["http://example.com/x.tif"]), "imageUrls[0]", id="http-image"),
    pytest.param(
        put("imageUrls", lambda r: [f"{r}/scene.ntf", "https://x.io/a.tif"]),
        "imageUrls[1]",
        id="https-second",
    ),
    pytest.param(put("imageUrls", ["gs://bucket/x.tif"]), "imageUrls[0]", id="gs-image"),
    pytest.param(put("imageUrls", ["s3://My_Bucket/x.tif"]), "imageUrls[0]", id="s3-bad-bucket"),
    pytest.param(put("imageUrls", ["s3://bucket/"]), "imageUrls[0]", id="s3-no-key"),
    pytest.param(put("imageReadRole", "ImageReader"), "imageReadRole", id="imageReadRole-not-arn"),
    # model
    pytest.param(drop("imageProcessor"), "imageProcessor", id="imageProcessor-missing"),
    pytest.param(put("imageProcessor", "detector"), "imageProcessor", id="imageProcessor-string"),
    pytest.param(put("imageProcessor.name", ""), "imageProcessor.name", id="name-empty"),
    pytest.param(drop("imageProcessor.name"), "imageProcessor.name", id="name-missing"),
    pytest.param(put("imageProcessor.type", "NONE"), "imageProcessor.type", id="type-NONE"),
    pytest.param(put("imageProcessor.type", "LAMBDA"), "imageProcessor.type", id="type-unknown"),
    pytest.param(put("imageProcessor.type", "sm_endpoint"), "imageProcessor.type", id="type-lowercase"),
    pytest.param(
        put("imageProcessor.endpoint", "x"), "imageProcessor.endpoint", id="imageProcessor-unknown-key"
    ),
    pytest.param(
        put("imageProcessor.assumedRole", "role"), "imageProcessor.assumedRole", id="assumedRole-not-arn"
    ),
    pytest.param(http("http://169.254.169.254/latest"), "imageProcessor.name", id="http-link-local"),
    pytest.param(http("http://2852039166/"), "imageProcessor.name", id="http-link-local-decimal"),
    pytest.param(
        http("http://[::ffff:169.254.169.254]/"), "imageProcessor.name", id="http-link-local-v4-mapped"
    ),
    pytest.param(http("http://[fe80::1]/"), "imageProcessor.name", id="http-link-local-v6"),
    pytest.param(http("http://metadata.google.internal/"), "imageProcessor.name", id="http-gcp-metadata"),
    pytest.param(http("http://100.100.100.200/"), "imageProcessor.name", id="http-alibaba-metadata"),
    pytest.param(http("http://[fd00:ec2::254]/"), "imageProcessor.name", id="http-aws-metadata-v6"),
    pytest.param(http("detector"), "imageProcessor.name", id="http-not-url"),
    pytest.param(http("ftp://models.example.com/"), "imageProcessor.name", id="http-ftp-scheme"),
    pytest.param(http("http://localhost:99999/"), "imageProcessor.name", id="http-bad-port"),
    pytest.param(put("imageProcessor.name", "my_endpoint!"), "imageProcessor.name", id="sm-invalid-chars"),
    pytest.param(put("imageProcessor.name", "a" * 64), "imageProcessor.name", id="sm-too-long"),
    pytest.param(
        put("imageProcessor.name", "http://127.0.0.1:8080"), "imageProcessor.name", id="sm-given-url"
    ),
    pytest.param(
        put("imageProcessorParameters", {"Foo": "x"}), "imageProcessorParameters.Foo", id="params-unknown"
    ),
    pytest.param(
        put("imageProcessorParameters", {"TargetVariant": 3}),
        "imageProcessorParameters.TargetVariant",
        id="params-not-string",
    ),
    # tiling
    pytest.param(put("imageProcessorTileSize", 0), "imageProcessorTileSize", id="tile-size-0"),
    pytest.param(put("imageProcessorTileSize", -512), "imageProcessorTileSize", id="tile-size-negative"),
    pytest.param(put("imageProcessorTileSize", True), "imageProcessorTileSize", id="tile-size-bool"),
    pytest.param(put("imageProcessorTileSize", [512]), "imageProcessorTileSize", id="tile-size-list"),
    pytest.param(put("imageProcessorTileSize", "big"), "imageProcessorTileSize", id="tile-size-word"),
    pytest.param(put("imageProcessorTileSize", 512.5), "imageProcessorTileSize", id="tile-size-fraction"),
    pytest.param(
        put("imageProcessorTileOverlap", 512), "imageProcessorTileOverlap", id="overlap-equals-size"
    ),
    pytest.param(put("imageProcessorTileOverlap", -1), "imageProcessorTileOverlap", id="overlap-negative"),
    pytest.param(
        put("imageProcessorTileOverlap", "600"), "imageProcessorTileOverlap", id="overlap-over-size"
    ),
    pytest.param(put("imageProcessorTileFormat", "TIFF"), "imageProcessorTileFormat", id="format-TIFF"),
    pytest.param(put("imageProcessorTileFormat", "gtiff"), "imageProcessorTileFormat", id="format-lowercase"),
    pytest.param(
        put("imageProcessorTileCompression", "ZIP"), "imageProcessorTileCompression", id="compression-ZIP"
    ),
    pytest.param(put("tilingStrategy", "GRID"), "tilingStrategy", id="tilingStrategy-unknown"),
    pytest.param(put("regionSize", 256), "regionSize", id="regionSize-below-tile"),
    pytest.param(put("regionSize", "big"), "regionSize", id="regionSize-word"),
    pytest.param(put("regionOfInterest", "POLYGON((0 0, 1 0"), "regionOfInterest", id="roi-bad-wkt"),
    pytest.param(put("regionOfInterest", "POINT(1 2)"), "regionOfInterest", id="roi-point"),
    pytest.param(put("regionOfInterest", "POLYGON EMPTY"), "regionOfInterest", id="roi-empty"),
    pytest.param(
        put("regionOfInterest", "POLYGON((200 0, 201 0, 201 1, 200 0))"),
        "regionOfInterest",
        id="roi-not-lonlat",
    ),
    pytest.param(
        put("regionOfInterest", "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"),
        "regionOfInterest",
        id="roi-self-intersecting",
    ),
    pytest.param(put("regionOfInterest", {"type": "Polygon"}), "regionOfInterest", id="roi-geojson"),
    # outputs
    pytest.param(put("outputs", []), "outputs", id="outputs-empty-no-legacy"),
    pytest.param(drop("outputs"), "outputs", id="outputs-missing"),
    pytest.param(put("outputs", {"type": "S3"}), "outputs", id="outputs-object"),
    pytest.param(put("outputs[0]", "s3://bucket/p"), "outputs[0]", id="output-not-object"),
    pytest.param(put("outputs[0].type", "SQS"), "outputs[0].type", id="output-unknown-type"),
    pytest.param(put("outputs[1].type", "s3"), "outputs[1].type", id="output-type-lowercase"),
    pytest.param(drop("outputs[1].type"), "outputs[1].type", id="output-type-missing"),
    pytest.param(drop("outputs[1].bucket"), "outputs[1].bucket", id="s3-bucket-missing"),
    pytest.param(put("outputs[1].bucket", "My_Results"), "outputs[1].bucket", id="s3-bucket-invalid"),
    pytest.param(
        put("outputs[1].bucket", "arn:aws:s3:::my-results"), "outputs[1].bucket", id="s3-bucket-arn"
    ),
    pytest.param(put("outputs[1].role", "writer"), "outputs[1].role", id="s3-role-not-arn"),
    pytest.param(put("outputs[1].role_arn", "arn:x"), "outputs[1].role_arn", id="output-unknown-key"),
    pytest.param(put("outputs[2].role", "arn:x"), "outputs[2].role", id="kinesis-s3-role-key"),
    pytest.param(put("outputs[2].batchSize", 0), "outputs[2].batchSize", id="kinesis-batch-0"),
    pytest.param(put("outputs[2].batchSize", "10"), "outputs[2].batchSize", id="kinesis-batch-string"),
    pytest.param(drop("outputs[2].stream"), "outputs[2].stream", id="kinesis-stream-missing"),
    pytest.param(put("outputs[2].stream", "a b"), "outputs[2].stream", id="kinesis-stream-invalid"),
    pytest.param(put("outputs[2].assumedRole", "r"), "outputs[2].assumedRole", id="kinesis-role-not-arn"),
    pytest.param(put("outputs[0].path", outside("results")), "outputs[0].path", id="file-output-outside"),
    pytest.param(put("outputs[0].path", "results"), "outputs[0].path", id="file-output-relative"),
    pytest.param(put("outputs[0].path", "s3://bucket/p"), "outputs[0].path", id="file-output-s3"),
    pytest.param(drop("outputs[0].path"), "outputs[0].path", id="file-output-path-missing"),
    pytest.param(
        both(put("outputs", []), put("outputBucket", "legacy-bucket")),
        "outputPrefix",
        id="legacy-prefix-missing",
    ),
    pytest.param(
        both(put("outputs", []), put("outputBucket", "Bad_Bucket"), put("outputPrefix", "p/")),
        "outputBucket",
        id="legacy-bad-bucket",
    ),
    # features and post-processing
    pytest.param(
        put("featureProperties[1]", "x"), "featureProperties[1]", id="featureProperties-item-string"
    ),
    pytest.param(put("featureProperties", {"a": 1}), "featureProperties", id="featureProperties-object"),
    pytest.param(
        put("postProcessing", [{"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS"}}] * 2),
        "postProcessing",
        id="postProcessing-two-steps",
    ),
    pytest.param(
        put("postProcessing", {"step": "FEATURE_DISTILLATION"}), "postProcessing", id="postProcessing-object"
    ),
    pytest.param(put("postProcessing[0].step", "DEDUPLICATION"), "postProcessing[0].step", id="step-wrong"),
    pytest.param(drop("postProcessing[0].algorithm"), "postProcessing[0].algorithm", id="algorithm-missing"),
    pytest.param(put("postProcessing[0].extra", 1), "postProcessing[0].extra", id="step-unknown-key"),
    pytest.param(algorithm(algorithmType="WBF"), f"{ALGO}.algorithmType", id="algorithmType-unknown"),
    pytest.param(algorithm(iouThreshold=0.5), f"{ALGO}.algorithmType", id="algorithmType-missing"),
    pytest.param(algorithm(algorithmType="NMS", iouThreshold=1.5), f"{ALGO}.iouThreshold", id="iou-1.5"),
    pytest.param(
        algorithm(algorithm_type="NMS", iou_threshold=-0.1), f"{ALGO}.iou_threshold", id="iou-snake-negative"
    ),
    pytest.param(algorithm(algorithmType="NMS", iouThreshold="0.5"), f"{ALGO}.iouThreshold", id="iou-string"),
    pytest.param(algorithm(algorithmType="NMS", sigma=0.1), f"{ALGO}.sigma", id="sigma-on-NMS"),
    pytest.param(
        algorithm(algorithmType="NONE", iouThreshold=0.5), f"{ALGO}.iouThreshold", id="threshold-on-NONE"
    ),
    pytest.param(algorithm(algorithmType="SOFT_NMS", sigma=0), f"{ALGO}.sigma", id="sigma-zero"),
    pytest.param(
        algorithm(algorithmType="SOFT_NMS", skipBoxThreshold=2), f"{ALGO}.skipBoxThreshold", id="skip-2"
    ),
    pytest.param(
        algorithm(algorithmType="NMS", method="linear"), f"{ALGO}.method", id="algorithm-unknown-key"
    ),
    pytest.param(
        algorithm(algorithmType="NMS", iouThreshold=0.5, iou_threshold=0.6),
        f"{ALGO}.iou_threshold",
        id="iou-twice",
    ),
    pytest.param(
        algorithm(algorithmType="NMS", polygonIou="yes"), f"{ALGO}.polygonIou", id="polygonIou-string"
    ),
]


def apply(mutation: Mutation, root: Path) -> Any:
    conf = base_sample(root)
    replaced = mutation(conf, root)
    return conf if replaced is None else replaced


def test_base_sample_is_valid(root):
    assert parse(base_sample(root), root).job_id == "job-1"
    SCHEMA_VALIDATOR.validate(base_sample(root))


@pytest.mark.parametrize(("mutation", "field"), INVALID)
def test_invalid_request(root, mutation, field):
    with pytest.raises(InvalidImageRequest) as info:
        parse(apply(mutation, root), root)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert info.value.reason


# --- JSON Schema ---------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(image_request_schema())
    assert image_request_schema()["required"] == ["jobId", "imageUrls", "imageProcessor"]


def test_schema_properties_are_documented():
    properties = image_request_schema()["properties"]
    for name, prop in properties.items():
        assert prop.get("description"), name
        assert "$ref" not in json.dumps(prop), name  # each property must stand alone as an Airflow Param
    defaults = {name: prop["default"] for name, prop in properties.items() if "default" in prop}
    assert defaults == {
        "imageProcessorParameters": {},
        "imageProcessorTileSize": 1024,
        "imageProcessorTileOverlap": 50,
        "imageProcessorTileFormat": "NITF",
        "imageProcessorTileCompression": "NONE",
        "tilingStrategy": "VARIABLE_OVERLAP",
        "rangeAdjustment": "NONE",
        "featureProperties": [],
        "postProcessing": [
            {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.75}}
        ],
    }


def test_schema_defaults_match_parser_defaults(root):
    properties = image_request_schema()["properties"]
    conf = minimal_sample(root)
    with_defaults = dict(conf, **{name: p["default"] for name, p in properties.items() if "default" in p})
    assert parse(with_defaults, root) == parse(conf, root)
    for prop in properties.values():
        if "default" in prop:
            jsonschema.Draft202012Validator(prop).validate(prop["default"])


def valid_samples(root: Path) -> list[dict]:
    legacy = dict(minimal_sample(root), outputBucket="legacy-bucket", outputPrefix="legacy/")
    del legacy["outputs"]
    numeric = dict(minimal_sample(root), imageProcessorTileSize="512", imageProcessorTileOverlap=" 64 ")
    http_model = dict(
        minimal_sample(root),
        imageProcessor={"name": "http://127.0.0.1:8080/invocations", "type": "HTTP_ENDPOINT"},
    )
    snake = dict(
        minimal_sample(root),
        postProcessing=[
            {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithm_type": "SOFT_NMS", "sigma": 0.5}}
        ],
    )
    nulls = dict(
        minimal_sample(root),
        jobName=None,
        regionOfInterest=None,
        regionSize=None,
        imageProcessorTileFormat=None,
    )
    samples = [*round_trip_samples(root), legacy, numeric, http_model, snake, nulls]
    return samples + [parse(sample, root).to_dict() for sample in samples]


def test_valid_samples_match_the_schema(root):
    for sample in valid_samples(root):
        parse(sample, root)
        errors = [error.message for error in SCHEMA_VALIDATOR.iter_errors(sample)]
        assert not errors, (sample, errors)


# invalid requests the schema alone can see (types, enums, required keys, ranges)
SCHEMA_REJECTS = {
    "jobId-missing", "jobId-empty", "jobId-slash", "jobId-dotdot", "jobId-too-long", "jobId-not-string",
    "request-not-object", "imageUrls-missing", "imageUrls-string", "imageUrls-empty", "imageUrls-not-string",
    "imageProcessor-missing", "imageProcessor-string", "name-missing", "type-NONE", "type-unknown",
    "type-lowercase", "imageProcessor-unknown-key", "assumedRole-not-arn", "http-not-url", "sm-invalid-chars",
    "sm-too-long", "params-unknown", "tile-size-0", "tile-size-negative", "tile-size-bool", "tile-size-list",
    "tile-size-word", "tile-size-fraction", "overlap-negative", "format-TIFF", "format-lowercase",
    "compression-ZIP", "tilingStrategy-unknown", "regionSize-word", "roi-geojson", "outputs-empty-no-legacy",
    "outputs-missing", "outputs-object", "output-not-object", "output-unknown-type", "output-type-lowercase",
    "output-type-missing", "s3-bucket-missing", "s3-bucket-invalid", "s3-role-not-arn", "output-unknown-key",
    "kinesis-s3-role-key", "kinesis-batch-0", "kinesis-batch-string", "kinesis-stream-missing",
    "file-output-path-missing", "legacy-prefix-missing", "featureProperties-item-string",
    "featureProperties-object", "postProcessing-two-steps", "postProcessing-object", "step-wrong",
    "algorithm-missing", "step-unknown-key", "algorithmType-unknown", "algorithmType-missing", "iou-1.5",
    "iou-snake-negative", "iou-string", "sigma-on-NMS", "threshold-on-NONE", "sigma-zero", "skip-2",
    "algorithm-unknown-key", "polygonIou-string",
}  # fmt: skip


@pytest.mark.parametrize(("mutation", "field"), [p for p in INVALID if p.id in SCHEMA_REJECTS])
def test_schema_rejects_invalid(root, mutation, field):
    assert not SCHEMA_VALIDATOR.is_valid(apply(mutation, root))


def test_schema_rejects_table_ids_exist():
    assert SCHEMA_REJECTS <= {p.id for p in INVALID}
