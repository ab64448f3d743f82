"""The sink parts of ImageRequest parsing: File ``format``, Kinesis ``batchSize``; checked before any model call."""

from __future__ import annotations

import jsonschema
import pytest

from airflow_provider_osml.request import InvalidImageRequest, image_request_schema, parse_image_request

SCHEMA = jsonschema.Draft202012Validator(image_request_schema())


def request(tmp_path, outputs: list[dict]) -> dict:
    return {"jobId": "j", "imageUrls": ["s3://imagery/scene.ntf"], "imageProcessor": {"name": "ep", "type": "SM_ENDPOINT"},
            "outputs": outputs}


@pytest.mark.parametrize("fmt, expected", [(None, None), ("GeoJSON", None), ("GeoJSONSeq", "GeoJSONSeq")])
def test_file_format_is_parsed(tmp_path, fmt, expected):
    output = {"type": "File", "path": str(tmp_path)}
    if fmt:
        output["format"] = fmt
    conf = request(tmp_path, [output])
    parsed = parse_image_request(conf, allowed_roots=[str(tmp_path)]).outputs[0]
    assert parsed.get("format") == expected
    assert SCHEMA.is_valid(conf)


@pytest.mark.parametrize(
    "fmt, message",
    [
        ("GeoParquet", "outputs[1].format: GeoParquet is not available in this version"),
        ("FlatGeobuf", "outputs[1].format: FlatGeobuf is not available"),
        ("geojsonseq", "outputs[1].format: must be one of GeoJSON, GeoJSONSeq"),
        (3, "outputs[1].format: must be one of GeoJSON, GeoJSONSeq; got integer"),
    ],
)
def test_unknown_or_unavailable_file_formats_name_the_field(tmp_path, fmt, message):
    conf = request(tmp_path, [{"type": "S3", "bucket": "results"}, {"type": "File", "path": str(tmp_path), "format": fmt}])
    with pytest.raises(InvalidImageRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_image_request(conf, allowed_roots=[str(tmp_path)])
    assert not SCHEMA.is_valid(conf)


def test_kinesis_output_is_parsed_and_available(tmp_path):
    from airflow_provider_osml.sinks import SINK_TYPES

    conf = request(tmp_path, [{"type": "Kinesis", "stream": "s", "batchSize": 10,
                               "assumedRole": "arn:aws:iam::123456789012:role/writer"}])
    output = parse_image_request(conf).outputs[0]
    assert output == {"type": "Kinesis", "stream": "s", "batchSize": 10,
                      "assumedRole": "arn:aws:iam::123456789012:role/writer"}
    assert output["type"] in SINK_TYPES
