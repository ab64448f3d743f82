"""The osml ImageRequest: parse, validate and normalise it, and describe it as a JSON Schema.

Every field of osml-model-runner 2.1.1 and 2.3.0 is accepted (spec 1.1 to 1.3), plus a few of ours:
``tilingStrategy``, ``regionSize``, the ``File`` output, the ``NONE`` distillation algorithm and the
``polygonIou`` distillation option. Validation is stricter than upstream where upstream fails late or
silently (spec 1.5 and 11: Q11 no outputs, Q14 ``type: NONE``): a request that passes here can run.

Rules that are ours, not osml's:

- An explicit ``null`` means the key is absent (the Airflow trigger form sends unset params as null).
- Image URLs and ``File`` paths come from users: ``s3://bucket/key``, or absolute local paths (or
  ``file:///`` URLs) that resolve, symlinks included, under an allowed root (``OSML_ALLOWED_ROOTS``).
  GDAL ``/vsi...`` paths and other schemes are rejected.
- ``https://`` images only from hosts on the deployment's allow-list (``OSML_IMAGE_HOSTS_ALLOWED``, comma
  separated ``host[:port]``; an entry spelled ``http://host[:port]`` also allows plain http there), never with
  credentials in the URL, never on link-local or cloud-metadata addresses.
- ``HTTP_ENDPOINT`` models may not live on link-local or cloud-metadata addresses.

This module is plain Python (no Airflow import) so the CLI and tests can use it directly.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import os
import re
import socket
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import shapely
from shapely.errors import ShapelyError
from shapely.validation import explain_validity

DEFAULT_TILE_SIZE = 1024
DEFAULT_TILE_OVERLAP = 50
DEFAULT_TILE_FORMAT = "NITF"
DEFAULT_TILE_COMPRESSION = "NONE"
DEFAULT_TILING_STRATEGY = "VARIABLE_OVERLAP"
DEFAULT_MODEL_INVOKE_MODE = "SM_ENDPOINT"
DEFAULT_ALGORITHM_TYPE = "NMS"
DEFAULT_IOU_THRESHOLD = 0.75
DEFAULT_SKIP_BOX_THRESHOLD = 0.0001
DEFAULT_SIGMA = 0.1

MODEL_INVOKE_MODES = ("SM_ENDPOINT", "HTTP_ENDPOINT")
TILE_FORMATS = ("NITF", "JPEG", "PNG", "GTIFF")
TILE_COMPRESSIONS = ("NONE", "JPEG", "J2K", "LZW")
TILING_STRATEGIES = ("VARIABLE_OVERLAP", "VARIABLE_TILE")
# issue 3: the toolkit's RangeAdjustmentType; anything but NONE gives 8-bit tiles
RANGE_ADJUSTMENTS = ("NONE", "MINMAX", "DRA")
ALGORITHM_TYPES = ("NMS", "SOFT_NMS", "NONE")
FEATURE_DISTILLATION = "FEATURE_DISTILLATION"
OUTPUT_TYPES = ("S3", "Kinesis", "File")
MODEL_PARAMETER_KEYS = (
    "ContentType",
    "Accept",
    "CustomAttributes",
    "TargetVariant",
    "TargetContainerHostname",
    "InferenceComponentName",
)
MAX_JOB_ID_LENGTH = 256
ALLOWED_ROOTS_ENV = "OSML_ALLOWED_ROOTS"
# operators/settings.py reads the [osml] option under both names; honour the same two here
_ALLOWED_ROOTS_ENVS = ("AIRFLOW__OSML__ALLOWED_ROOTS", ALLOWED_ROOTS_ENV)

_OUTPUT_KEYS = {
    "S3": ("type", "bucket", "prefix", "role"),
    "Kinesis": ("type", "stream", "batchSize", "assumedRole"),
    "File": ("type", "path", "format"),
}
# File output formats (sinks/file.py writes them); GDAL-only vector formats are refused by name
FILE_OUTPUT_FORMATS = ("GeoJSON", "GeoJSONSeq")
_UNSUPPORTED_FILE_FORMATS = ("GeoParquet", "FlatGeobuf")
_IMAGE_PROCESSOR_KEYS = ("name", "type", "assumedRole")
_POST_PROCESSING_KEYS = ("step", "algorithm")
# camelCase request key -> attribute; snake_case keys are accepted as-is, like upstream
_ALGORITHM_KEYS = {
    "algorithmType": "algorithm_type",
    "iouThreshold": "iou_threshold",
    "skipBoxThreshold": "skip_box_threshold",
    "sigma": "sigma",
    "polygonIou": "polygon_iou",
}
_ALGORITHM_ATTRS = frozenset(_ALGORITHM_KEYS.values())

_INT_STRING = re.compile(r"\s*[+-]?[0-9]+\s*")
_S3_BUCKET = re.compile(r"(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SM_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_KINESIS_STREAM = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# a GDAL virtual file system segment such as /vsicurl/, /vsis3/, /vsizip/ anywhere in the string
_VSI_SEGMENT = re.compile(r"(^|/)vsi[a-z0-9_]*(/|$)", re.IGNORECASE)
_METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_METADATA_IPS = frozenset({ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")})
_LOCAL_HINT = "use s3://bucket/key or an absolute local path"
IMAGE_HOSTS_ENV = "AIRFLOW__OSML__IMAGE_HOSTS_ALLOWED"
_IMAGE_HOSTS_ENVS = (IMAGE_HOSTS_ENV, "OSML_IMAGE_HOSTS_ALLOWED")


class InvalidImageRequest(ValueError):
    """An ImageRequest that cannot run; ``field`` is the dotted JSON path, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self):
        # keeps the exception picklable (Airflow may ship it across processes)
        return (type(self), (self.field, self.reason))


# --- dataclasses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDistillation:
    """The ``FEATURE_DISTILLATION`` post-processing step: how overlapping detections are de-duplicated.

    ``NONE`` (ours) keeps every detection. ``polygon_iou`` (ours) asks for IoU on polygons, not boxes.
    """

    algorithm_type: str = DEFAULT_ALGORITHM_TYPE
    iou_threshold: float = DEFAULT_IOU_THRESHOLD
    skip_box_threshold: float = DEFAULT_SKIP_BOX_THRESHOLD
    sigma: float = DEFAULT_SIGMA
    polygon_iou: bool = False

    @classmethod
    def from_dict(cls, data: Any, *, field: str = "algorithm") -> FeatureDistillation:
        """Parse an ``algorithm`` object (camelCase or snake_case keys); errors name ``field``."""
        return _parse_algorithm(data, field)

    def to_dict(self) -> dict[str, Any]:
        """The camelCase request form, with only the keys this algorithm takes."""
        out: dict[str, Any] = {"algorithmType": self.algorithm_type}
        if self.algorithm_type == "NONE":
            return out
        out["iouThreshold"] = self.iou_threshold
        if self.algorithm_type == "SOFT_NMS":
            out["skipBoxThreshold"] = self.skip_box_threshold
            out["sigma"] = self.sigma
        if self.polygon_iou:
            out["polygonIou"] = True
        return out


@dataclass(frozen=True, kw_only=True)
class ImageRequest:
    """A validated, normalised ImageRequest (build it with :func:`parse_image_request`)."""

    job_id: str
    job_name: str | None = None
    image_urls: tuple[str, ...]
    image_read_role: str | None = None
    model_name: str
    model_invoke_mode: str = DEFAULT_MODEL_INVOKE_MODE
    model_assumed_role: str | None = None
    model_parameters: dict[str, str] = field(default_factory=dict)
    tile_size: int = DEFAULT_TILE_SIZE
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    tile_format: str = DEFAULT_TILE_FORMAT
    tile_compression: str = DEFAULT_TILE_COMPRESSION
    tiling_strategy: str = DEFAULT_TILING_STRATEGY
    region_size: int | None = None
    region_of_interest: str | None = None
    outputs: tuple[dict[str, Any], ...]
    feature_properties: tuple[dict[str, Any], ...] = ()
    post_processing: FeatureDistillation = field(default_factory=FeatureDistillation)
    range_adjustment: str = "NONE"

    @property
    def image_url(self) -> str:
        """The image that is processed: only the first URL counts, as upstream."""
        return self.image_urls[0]

    @property
    def image_id(self) -> str:
        """``jobId:imageUrl``, the upstream image id used in status messages."""
        return f"{self.job_id}:{self.image_url}"

    @classmethod
    def from_dict(
        cls, conf: Any, *, allowed_roots: Sequence[str | os.PathLike[str]] | None = None
    ) -> ImageRequest:
        return parse_image_request(conf, allowed_roots=allowed_roots)

    def to_dict(self) -> dict[str, Any]:
        """The camelCase request, defaults included; ``parse_image_request(r.to_dict()) == r``."""
        processor: dict[str, Any] = {"name": self.model_name, "type": self.model_invoke_mode}
        if self.model_assumed_role:
            processor["assumedRole"] = self.model_assumed_role
        out: dict[str, Any] = {"jobId": self.job_id}
        if self.job_name is not None:
            out["jobName"] = self.job_name
        out["imageUrls"] = list(self.image_urls)
        if self.image_read_role:
            out["imageReadRole"] = self.image_read_role
        out.update(
            {
                "imageProcessor": processor,
                "imageProcessorParameters": dict(self.model_parameters),
                "imageProcessorTileSize": self.tile_size,
                "imageProcessorTileOverlap": self.tile_overlap,
                "imageProcessorTileFormat": self.tile_format,
                "imageProcessorTileCompression": self.tile_compression,
                "tilingStrategy": self.tiling_strategy,
            }
        )
        if self.region_size is not None:
            out["regionSize"] = self.region_size
        if self.region_of_interest is not None:
            out["regionOfInterest"] = self.region_of_interest
        out["outputs"] = copy.deepcopy(list(self.outputs))
        out["featureProperties"] = copy.deepcopy(list(self.feature_properties))
        out["postProcessing"] = [{"step": FEATURE_DISTILLATION, "algorithm": self.post_processing.to_dict()}]
        if self.range_adjustment != "NONE":
            out["rangeAdjustment"] = self.range_adjustment
        return out


# --- entry point ---------------------------------------------------------------------------------


def parse_image_request(
    conf: Any, *, allowed_roots: Sequence[str | os.PathLike[str]] | None = None
) -> ImageRequest:
    """Validate an osml ImageRequest (2.1.1 / 2.3.0 fields plus ours) and return it normalised.

    :param conf: the request as decoded JSON (e.g. an Airflow DAG run's conf).
    :param allowed_roots: directories local image paths and ``File`` outputs must resolve under; ``None``
        reads ``OSML_ALLOWED_ROOTS`` (``os.pathsep``-separated). No roots means no local paths at all.
    :raises InvalidImageRequest: naming the offending field and why.
    """
    request = _object(conf, "$")
    roots = _allowed_roots(allowed_roots)
    job_id = _job_id(request.get("jobId"))
    _optional_string(request, "jobArn", "jobArn")  # 2.1.1 required it; ignored since 2.2.0
    image_urls = _image_urls(request.get("imageUrls"), roots)
    model_name, invoke_mode, model_role = _image_processor(request.get("imageProcessor"))
    tile_size = _tile_size(request.get("imageProcessorTileSize"))
    return ImageRequest(
        job_id=job_id,
        job_name=_optional_string(request, "jobName", "jobName"),
        image_urls=image_urls,
        image_read_role=_optional_arn(request, "imageReadRole", "imageReadRole"),
        model_name=model_name,
        model_invoke_mode=invoke_mode,
        model_assumed_role=model_role,
        model_parameters=_model_parameters(request.get("imageProcessorParameters")),
        tile_size=tile_size,
        tile_overlap=_tile_overlap(request.get("imageProcessorTileOverlap"), tile_size),
        tile_format=_enum_or_default(request, "imageProcessorTileFormat", TILE_FORMATS, DEFAULT_TILE_FORMAT),
        tile_compression=_enum_or_default(
            request, "imageProcessorTileCompression", TILE_COMPRESSIONS, DEFAULT_TILE_COMPRESSION
        ),
        tiling_strategy=_enum_or_default(
            request, "tilingStrategy", TILING_STRATEGIES, DEFAULT_TILING_STRATEGY
        ),
        region_size=_region_size(request.get("regionSize"), tile_size),
        region_of_interest=_region_of_interest(request.get("regionOfInterest")),
        range_adjustment=_enum_or_default(request, "rangeAdjustment", RANGE_ADJUSTMENTS, "NONE"),
        outputs=_outputs(request, roots),
        feature_properties=_feature_properties(request.get("featureProperties")),
        post_processing=_post_processing(request.get("postProcessing")),
    )


# --- generic value checks ------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidImageRequest(field, f"must be a JSON object, got {_json_type(value)}")
    return value


def _array(value: Any, field: str, what: str) -> list | tuple:
    if isinstance(value, str):
        raise InvalidImageRequest(field, f"must be a list of {what}, got a string (wrap it in a list)")
    if not isinstance(value, list | tuple):
        raise InvalidImageRequest(field, f"must be a list of {what}, got {_json_type(value)}")
    return value


def _string(value: Any, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidImageRequest(field, f"must be a string, got {_json_type(value)}")
    if not allow_empty and not value.strip():
        raise InvalidImageRequest(field, "must not be empty")
    return value


def _required(obj: Mapping[str, Any], key: str, field: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise InvalidImageRequest(field, "is required")
    return value


def _optional_string(obj: Mapping[str, Any], key: str, field: str) -> str | None:
    value = obj.get(key)
    return None if value is None else _string(value, field, allow_empty=True)


def _optional_arn(obj: Mapping[str, Any], key: str, field: str) -> str | None:
    """An optional IAM role ARN; empty counts as absent, as upstream (``if role and ...``)."""
    value = _optional_string(obj, key, field)
    if not value:
        return None
    if not value.startswith("arn:"):
        raise InvalidImageRequest(field, f"must be an IAM role ARN starting with 'arn:', got {value!r}")
    return value


def _integer(value: Any, field: str, *, allow_string: bool = False) -> int:
    """An integer; integral floats pass (JSON has one number type); numeric strings when allowed."""
    if isinstance(value, bool):
        raise InvalidImageRequest(field, "must be an integer, got boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if allow_string and isinstance(value, str) and _INT_STRING.fullmatch(value):
        return int(value)
    expected = "an integer or a numeric string" if allow_string else "an integer"
    shown = repr(value) if isinstance(value, str | float) else _json_type(value)
    raise InvalidImageRequest(field, f"must be {expected}, got {shown}")


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidImageRequest(field, f"must be a finite number, got {_json_type(value)} {value!r}")
    return float(value)


def _enum(value: Any, field: str, allowed: Sequence[str]) -> str:
    """A case-sensitive enum value, as upstream; the message lists the allowed values."""
    expected = ", ".join(allowed)
    if not isinstance(value, str):
        raise InvalidImageRequest(field, f"must be one of {expected}; got {_json_type(value)}")
    if value in allowed:
        return value
    hint = ""
    if value.upper() in allowed:
        hint = f" (values are case-sensitive: did you mean {value.upper()!r}?)"
    raise InvalidImageRequest(field, f"must be one of {expected}; got {value!r}{hint}")


def _enum_or_default(obj: Mapping[str, Any], key: str, allowed: Sequence[str], default: str) -> str:
    value = obj.get(key)
    return default if value is None else _enum(value, key, allowed)


def _reject_unknown_keys(obj: Mapping[str, Any], allowed: Sequence[str], field: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InvalidImageRequest(f"{field}.{key}", f"unknown key; allowed keys are {', '.join(allowed)}")


def _reject_control_chars(value: str, field: str) -> None:
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidImageRequest(field, "must not contain control characters")


# --- identity ------------------------------------------------------------------------------------


def _job_id(value: Any) -> str:
    """``jobId`` names the result file and S3 key, so it must be a safe single path segment."""
    if value is None:
        raise InvalidImageRequest("jobId", "is required")
    job_id = _string(value, "jobId")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidImageRequest(
            "jobId", f"must be at most {MAX_JOB_ID_LENGTH} characters, got {len(job_id)}"
        )
    if "/" in job_id or "\\" in job_id:
        raise InvalidImageRequest("jobId", "must not contain '/' or '\\' (it names the output file)")
    if ".." in job_id:
        raise InvalidImageRequest("jobId", "must not contain '..' (it names the output file)")
    _reject_control_chars(job_id, "jobId")
    return job_id


# --- image URLs and local paths ------------------------------------------------------------------


def _allowed_roots(allowed_roots: Sequence[str | os.PathLike[str]] | None) -> tuple[str, ...]:
    """Resolved allowed roots; ``None`` reads them from the environment."""
    if allowed_roots is None:
        raw = next((os.environ[name] for name in _ALLOWED_ROOTS_ENVS if os.environ.get(name)), "")
        allowed_roots = raw.split(os.pathsep)
    # realpath: a root given through a symlink must match the resolved paths we compare against it
    return tuple(os.path.realpath(root) for root in allowed_roots if root)


def _image_urls(value: Any, roots: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        raise InvalidImageRequest("imageUrls", "is required")
    urls = _array(value, "imageUrls", "image URLs")
    if not urls:
        raise InvalidImageRequest("imageUrls", "must contain at least one image URL")
    # only the first URL is processed (as upstream), but all are checked: they are stored and echoed back
    return tuple(_image_url(url, f"imageUrls[{i}]", roots) for i, url in enumerate(urls))


def _image_url(value: Any, field: str, roots: tuple[str, ...]) -> str:
    url = _string(value, field)
    _reject_control_chars(url, field)
    _reject_vsi(url, field)
    scheme = _scheme(url)
    if scheme == "s3":
        return _s3_url(url, field)
    if scheme == "file":
        return _local_path(_file_url_path(url, field), field, roots)
    if scheme in ("http", "https"):
        return _web_image_url(url, scheme, field)
    if scheme:
        raise InvalidImageRequest(field, f"URL scheme {scheme!r} is not supported; {_LOCAL_HINT}")
    return _local_path(url, field, roots)


def image_hosts_allowed() -> frozenset[str]:
    """The deployment's image host allow-list: ``host[:port]`` (https) or ``http://host[:port]`` entries."""
    raw = next((os.environ[name] for name in _IMAGE_HOSTS_ENVS if os.environ.get(name)), "")
    return frozenset(entry.strip().lower().rstrip("/") for entry in raw.split(",") if entry.strip())


def _web_image_url(url: str, scheme: str, field: str) -> str:
    """An http(s) image URL on an allow-listed host, without credentials, off metadata addresses."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidImageRequest(field, f"{scheme}:// image URLs need a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        # credentials would end up in GDAL's logs and our task logs
        raise InvalidImageRequest(field, "credentials in image URLs are not allowed")
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidImageRequest(field, f"invalid port in {url!r}") from exc
    host = parts.hostname.rstrip(".").lower()
    if host in _METADATA_HOSTS or _is_metadata_address(host):
        raise InvalidImageRequest(
            field, f"host {host!r} is a link-local or cloud metadata address; images there are not allowed"
        )
    host_port = f"[{host}]" if ":" in host else host
    host_port += f":{port}" if port else ""
    allowed = image_hosts_allowed()
    candidates = {f"http://{host_port}"} if scheme == "http" else {host_port, f"https://{host_port}"}
    if not candidates & allowed:
        need = f"http://{host_port}" if scheme == "http" else host_port
        raise InvalidImageRequest(
            field,
            f"{scheme}:// images from {host_port!r} are not allowed: add {need!r} to {IMAGE_HOSTS_ENV} "
            f"(comma separated) or {_LOCAL_HINT}",
        )
    return url


def resolves_to_metadata_address(host: str) -> bool:
    """True when a host name resolves to a link-local or metadata address (a DNS way around the checks)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # GDAL will fail to connect and say so
    return any(_is_metadata_address(info[4][0].split("%", 1)[0]) for info in infos)


def _scheme(url: str) -> str | None:
    """The lower-cased URL scheme, or None for a plain path (a Windows drive letter is not a scheme)."""
    match = _SCHEME.match(url)
    if not match or len(match.group(1)) == 1:
        return None
    return match.group(1).lower()


def _reject_vsi(value: str, field: str) -> None:
    # GDAL would fetch /vsicurl/ URLs or read inside archives: a way around every check below
    if _VSI_SEGMENT.search(value):
        raise InvalidImageRequest(
            field, f"GDAL virtual file system paths (/vsi...) are not allowed; {_LOCAL_HINT}"
        )


def _s3_url(url: str, field: str) -> str:
    if url[:5].lower() != "s3://":
        raise InvalidImageRequest(field, f"S3 URLs must look like s3://bucket/key, got {url!r}")
    bucket, _, key = url[5:].partition("/")
    if not _S3_BUCKET.fullmatch(bucket):
        raise InvalidImageRequest(field, f"invalid S3 bucket name {bucket!r}: {_BUCKET_RULE}")
    if not key:
        raise InvalidImageRequest(field, f"S3 URLs must name an object (s3://bucket/key), got {url!r}")
    return f"s3://{bucket}/{key}"


_BUCKET_RULE = (
    "3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
)


def _file_url_path(url: str, field: str) -> str:
    """The local path of a ``file:///abs/path`` (or ``file://localhost/abs/path``) URL, percent-decoded."""
    rest = url[len("file://") :] if url[:7].lower() == "file://" else ""
    if rest.lower().startswith("localhost/"):
        rest = rest[len("localhost") :]
    if not rest.startswith("/"):
        raise InvalidImageRequest(field, f"file URLs must look like file:///absolute/path, got {url!r}")
    path = unquote(rest)
    _reject_control_chars(path, field)
    return path


def _local_path(path: str, field: str, roots: tuple[str, ...]) -> str:
    """An absolute local path that resolves (symlinks and '..' included) under an allowed root."""
    _reject_vsi(path, field)
    if not os.path.isabs(path):
        raise InvalidImageRequest(field, f"local paths must be absolute, got {path!r}")
    if not roots:
        raise InvalidImageRequest(
            field,
            f"local paths are not allowed because no allowed roots are configured: set {ALLOWED_ROOTS_ENV} "
            f"to the directories (separated by {os.pathsep!r}) that requests may read and write",
        )
    real = os.path.realpath(path)
    if not any(_is_under(real, root) for root in roots):
        shown = path if real == os.path.normpath(path) else f"{path} (resolves to {real})"
        raise InvalidImageRequest(field, f"{shown} is outside the allowed roots ({', '.join(roots)})")
    return path


def _is_under(path: str, root: str) -> bool:
    return root == os.sep or path == root or path.startswith(root + os.sep)


def _s3_bucket(value: Any, field: str) -> str:
    bucket = _string(value, field)
    if not _S3_BUCKET.fullmatch(bucket):
        raise InvalidImageRequest(field, f"invalid S3 bucket name {bucket!r}: {_BUCKET_RULE}")
    return bucket


# --- model ---------------------------------------------------------------------------------------


def _image_processor(value: Any) -> tuple[str, str, str | None]:
    """``imageProcessor`` -> (model name, invoke mode, assumed role)."""
    if value is None:
        raise InvalidImageRequest("imageProcessor", "is required")
    processor = _object(value, "imageProcessor")
    _reject_unknown_keys(processor, _IMAGE_PROCESSOR_KEYS, "imageProcessor")
    mode = processor.get("type")
    if mode is None:
        mode = DEFAULT_MODEL_INVOKE_MODE  # optional since 2.3.0
    elif mode == "NONE":
        # osml accepts NONE, then builds no detector and fails every tile (spec 11 Q14)
        raise InvalidImageRequest(
            "imageProcessor.type",
            "NONE is not supported (no model would be called); use SM_ENDPOINT or HTTP_ENDPOINT",
        )
    else:
        mode = _enum(mode, "imageProcessor.type", MODEL_INVOKE_MODES)
    name = _string(_required(processor, "name", "imageProcessor.name"), "imageProcessor.name")
    if mode == "HTTP_ENDPOINT":
        _check_http_endpoint(name, "imageProcessor.name")
    else:
        _check_sagemaker_endpoint(name, "imageProcessor.name")
    role = _optional_arn(processor, "assumedRole", "imageProcessor.assumedRole")
    return name, mode, role


def _check_sagemaker_endpoint(name: str, field: str) -> None:
    if len(name) > 63 or not _SM_ENDPOINT_NAME.fullmatch(name):
        raise InvalidImageRequest(
            field,
            f"{name!r} is not a SageMaker endpoint name (1 to 63 letters, digits and inner hyphens); "
            "for a URL set imageProcessor.type to HTTP_ENDPOINT",
        )


def _check_http_endpoint(url: str, field: str) -> None:
    """An http(s) URL with a host that is not link-local or a cloud metadata service (SSRF guard)."""
    _reject_control_chars(url, field)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidImageRequest(
            field, f"an HTTP_ENDPOINT name must be an http:// or https:// URL with a host, got {url!r}"
        )
    try:
        parts.port  # noqa: B018 -- parsing the port is the check
    except ValueError as exc:
        raise InvalidImageRequest(field, f"invalid port in {url!r}") from exc
    host = parts.hostname.rstrip(".")
    if host in _METADATA_HOSTS or _is_metadata_address(host):
        raise InvalidImageRequest(
            field,
            f"host {host!r} is a link-local or cloud metadata address; model endpoints there are not allowed",
        )


def _is_metadata_address(host: str) -> bool:
    address = _ip_address(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA_IPS


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton also reads the forms the resolver accepts: 2852039166, 0xa9fea9fe, 169.254.43518
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _model_parameters(value: Any) -> dict[str, str]:
    """``imageProcessorParameters``: extra ``invoke_endpoint`` arguments (osml after 2.3.0, Appendix B)."""
    if value is None:
        return {}
    params = _object(value, "imageProcessorParameters")
    _reject_unknown_keys(params, MODEL_PARAMETER_KEYS, "imageProcessorParameters")
    return {
        key: _string(item, f"imageProcessorParameters.{key}", allow_empty=True)
        for key, item in params.items()
        if item is not None
    }


# --- tiling --------------------------------------------------------------------------------------


def _tile_size(value: Any) -> int:
    if value is None:
        return DEFAULT_TILE_SIZE
    size = _integer(value, "imageProcessorTileSize", allow_string=True)  # upstream does int(x)
    if size <= 0:
        raise InvalidImageRequest("imageProcessorTileSize", f"must be > 0, got {size}")
    return size


def _tile_overlap(value: Any, tile_size: int) -> int:
    if value is None:
        overlap = DEFAULT_TILE_OVERLAP
    else:
        overlap = _integer(value, "imageProcessorTileOverlap", allow_string=True)
    if not 0 <= overlap < tile_size:
        raise InvalidImageRequest(
            "imageProcessorTileOverlap",
            f"must be >= 0 and less than imageProcessorTileSize ({tile_size}), got {overlap}",
        )
    return overlap


def _region_size(value: Any, tile_size: int) -> int | None:
    if value is None:
        return None
    size = _integer(value, "regionSize")
    # a region smaller than a tile makes osml 2.3.0+ fail mid-job (spec 11 Q18)
    if size < tile_size:
        raise InvalidImageRequest(
            "regionSize", f"must be >= imageProcessorTileSize ({tile_size}), got {size}"
        )
    return size


def _region_of_interest(value: Any) -> str | None:
    """A lon/lat Polygon or MultiPolygon WKT; empty counts as absent, as upstream (``if roi:``)."""
    if value is None or value == "":
        return None
    text = _string(value, "regionOfInterest")
    try:
        geometry = shapely.from_wkt(text)
    except (ShapelyError, ValueError) as exc:
        raise InvalidImageRequest("regionOfInterest", f"is not valid WKT: {exc}") from exc
    if geometry is None or geometry.geom_type not in ("Polygon", "MultiPolygon"):
        kind = "nothing" if geometry is None else geometry.geom_type
        raise InvalidImageRequest("regionOfInterest", f"must be a POLYGON or MULTIPOLYGON, got {kind}")
    if geometry.is_empty:
        raise InvalidImageRequest("regionOfInterest", "must not be empty")
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise InvalidImageRequest(
            "regionOfInterest",
            "coordinates must be longitude, latitude (lon in [-180, 180], lat in [-90, 90]); "
            f"got bounds {geometry.bounds}",
        )
    if not geometry.is_valid:
        raise InvalidImageRequest("regionOfInterest", f"is not a valid polygon: {explain_validity(geometry)}")
    return text


# --- outputs -------------------------------------------------------------------------------------


def _outputs(request: Mapping[str, Any], roots: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    """``outputs``, else the legacy ``outputBucket`` + ``outputPrefix``; at least one is required.

    osml 2.3.0+ only finds a missing output after every model call (spec 11 Q11): we fail up front.
    """
    value = request.get("outputs")
    items = [] if value is None else _array(value, "outputs", "output objects")
    if items:
        return tuple(_output(item, f"outputs[{i}]", roots) for i, item in enumerate(items))
    legacy = _legacy_output(request)
    if legacy is None:
        raise InvalidImageRequest(
            "outputs",
            "at least one output (S3, Kinesis or File) is required, or the legacy outputBucket and "
            "outputPrefix pair; without one the results have nowhere to go",
        )
    return (legacy,)


def _legacy_output(request: Mapping[str, Any]) -> dict[str, Any] | None:
    bucket, prefix = request.get("outputBucket"), request.get("outputPrefix")
    if bucket is None and prefix is None:
        return None
    if prefix is None:
        raise InvalidImageRequest("outputPrefix", "is required with outputBucket when outputs is empty")
    if bucket is None:
        raise InvalidImageRequest("outputBucket", "is required with outputPrefix when outputs is empty")
    return {
        "type": "S3",
        "bucket": _s3_bucket(bucket, "outputBucket"),
        "prefix": _string(prefix, "outputPrefix", allow_empty=True),
    }


def _output(value: Any, field: str, roots: tuple[str, ...]) -> dict[str, Any]:
    output = _object(value, field)
    kind = _required(output, "type", f"{field}.type")
    kind = _enum(kind, f"{field}.type", OUTPUT_TYPES)
    _reject_unknown_keys(output, _OUTPUT_KEYS[kind], field)
    return _OUTPUT_PARSERS[kind](output, field, roots)


def _s3_output(output: Mapping[str, Any], field: str, roots: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "S3",
        "bucket": _s3_bucket(_required(output, "bucket", f"{field}.bucket"), f"{field}.bucket"),
        "prefix": _optional_string(output, "prefix", f"{field}.prefix") or "",
    }
    role = _optional_arn(output, "role", f"{field}.role")
    if role:
        out["role"] = role
    return out


def _kinesis_output(output: Mapping[str, Any], field: str, roots: tuple[str, ...]) -> dict[str, Any]:
    stream = _string(_required(output, "stream", f"{field}.stream"), f"{field}.stream")
    if not _KINESIS_STREAM.fullmatch(stream):
        raise InvalidImageRequest(
            f"{field}.stream", f"{stream!r} is not a Kinesis stream name (1 to 128 of a-z A-Z 0-9 _ . -)"
        )
    out: dict[str, Any] = {"type": "Kinesis", "stream": stream}
    if output.get("batchSize") is not None:
        # no upper bound: osml's own samples send 1000 (2.1.1 uses it per put_record, 2.3.0+ ignores it)
        batch = _integer(output["batchSize"], f"{field}.batchSize")
        if batch < 1:
            raise InvalidImageRequest(f"{field}.batchSize", f"must be >= 1, got {batch}")
        out["batchSize"] = batch
    role = _optional_arn(output, "assumedRole", f"{field}.assumedRole")
    if role:
        out["assumedRole"] = role
    return out


def _file_output(output: Mapping[str, Any], field: str, roots: tuple[str, ...]) -> dict[str, Any]:
    """Ours: ``<path>/<jobId>.geojson`` on a local or mounted file system, under an allowed root."""
    path_field = f"{field}.path"
    path = _string(_required(output, "path", path_field), path_field)
    _reject_control_chars(path, path_field)
    scheme = _scheme(path)
    if scheme == "file":
        path = _file_url_path(path, path_field)
    elif scheme:
        raise InvalidImageRequest(
            path_field, f"must be an absolute local directory or file:/// URL, got {path!r}"
        )
    out: dict[str, Any] = {"type": "File", "path": _local_path(path, path_field, roots)}
    fmt = output.get("format")
    if fmt is not None and fmt != "GeoJSON":
        if fmt in _UNSUPPORTED_FILE_FORMATS:
            raise InvalidImageRequest(
                f"{field}.format",
                f"{fmt} is not available in this version (it needs a GDAL vector stack); "
                f"use one of {', '.join(FILE_OUTPUT_FORMATS)}",
            )
        out["format"] = _enum(fmt, f"{field}.format", FILE_OUTPUT_FORMATS)
    return out


_OUTPUT_PARSERS: dict[str, Callable[[Mapping[str, Any], str, tuple[str, ...]], dict[str, Any]]] = {
    "S3": _s3_output,
    "Kinesis": _kinesis_output,
    "File": _file_output,
}


# --- features ------------------------------------------------------------------------------------


def _feature_properties(value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    items = _array(value, "featureProperties", "JSON objects")
    return tuple(
        copy.deepcopy(dict(_object(item, f"featureProperties[{i}]"))) for i, item in enumerate(items)
    )


def _post_processing(value: Any) -> FeatureDistillation:
    """``postProcessing``: at most one FEATURE_DISTILLATION step; none means NMS at 0.75, as upstream."""
    if value is None:
        return FeatureDistillation()
    steps = _array(value, "postProcessing", "post-processing steps")
    if len(steps) > 1:
        raise InvalidImageRequest(
            "postProcessing", f"at most one {FEATURE_DISTILLATION} step is supported, got {len(steps)} steps"
        )
    if not steps:
        return FeatureDistillation()
    step = _object(steps[0], "postProcessing[0]")
    _reject_unknown_keys(step, _POST_PROCESSING_KEYS, "postProcessing[0]")
    name = _required(step, "step", "postProcessing[0].step")
    if name != FEATURE_DISTILLATION:
        raise InvalidImageRequest("postProcessing[0].step", f"must be {FEATURE_DISTILLATION}, got {name!r}")
    algorithm = _required(step, "algorithm", "postProcessing[0].algorithm")
    return _parse_algorithm(algorithm, "postProcessing[0].algorithm")


def _parse_algorithm(value: Any, field: str) -> FeatureDistillation:
    given = _algorithm_keys(_object(value, field), field)
    if "algorithm_type" not in given:
        raise InvalidImageRequest(
            f"{field}.algorithmType", f"is required; one of {', '.join(ALGORITHM_TYPES)}"
        )
    type_key, type_value = given.pop("algorithm_type")
    algorithm_type = _enum(type_value, f"{field}.{type_key}", ALGORITHM_TYPES)
    # the options each algorithm takes; upstream's frozen dataclasses reject the others (e.g. sigma on NMS)
    allowed = {
        "NMS": {"iou_threshold", "polygon_iou"},
        "SOFT_NMS": {"iou_threshold", "skip_box_threshold", "sigma", "polygon_iou"},
        "NONE": set(),
    }[algorithm_type]
    for attr, (key, _) in given.items():
        if attr not in allowed:
            hint = "; skipBoxThreshold and sigma are SOFT_NMS options" if algorithm_type == "NMS" else ""
            raise InvalidImageRequest(f"{field}.{key}", f"is not an option of {algorithm_type}{hint}")
    options: dict[str, Any] = {}
    for attr, (key, item) in given.items():
        options[attr] = _ALGORITHM_CHECKS[attr](item, f"{field}.{key}")
    return FeatureDistillation(algorithm_type=algorithm_type, **options)


def _algorithm_keys(algorithm: Mapping[str, Any], field: str) -> dict[str, tuple[str, Any]]:
    """attribute -> (key as given, value), for the non-null keys; unknown and doubled keys are errors."""
    given: dict[str, tuple[str, Any]] = {}
    for key, item in algorithm.items():
        attr = _ALGORITHM_KEYS.get(key, key if key in _ALGORITHM_ATTRS else None)
        if attr is None:
            allowed = ", ".join(_ALGORITHM_KEYS)
            raise InvalidImageRequest(
                f"{field}.{key}", f"unknown key; allowed keys are {allowed} (or snake_case)"
            )
        if item is None:
            continue
        if attr in given:
            raise InvalidImageRequest(f"{field}.{key}", f"duplicates {given[attr][0]!r}")
        given[attr] = (key, item)
    return given


def _fraction(value: Any, field: str) -> float:
    number = _number(value, field)
    if not 0.0 <= number <= 1.0:
        raise InvalidImageRequest(field, f"must be within [0, 1], got {number}")
    return number


def _positive(value: Any, field: str) -> float:
    number = _number(value, field)
    if number <= 0.0:
        raise InvalidImageRequest(field, f"must be > 0, got {number}")
    return number


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidImageRequest(field, f"must be true or false, got {_json_type(value)}")
    return value


_ALGORITHM_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "iou_threshold": _fraction,
    "skip_box_threshold": _fraction,
    "sigma": _positive,
    "polygon_iou": _boolean,
}


# --- JSON Schema ---------------------------------------------------------------------------------

_ARN_PATTERN = "^(arn:|$)"
_JOB_ID_PATTERN = r"^(?!.*\.\.)[^/\\\x00-\x1f\x7f-\x9f]+$"
_POSITIVE_INT_STRING = r"^\s*\+?0*[1-9][0-9]*\s*$"
_NON_NEGATIVE_INT_STRING = r"^\s*\+?[0-9]+\s*$"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Allow null too: the parser reads an explicit null as "absent"."""
    schema = dict(schema)
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema["type"] = [*types, "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _string_enum(values: Sequence[str]) -> dict[str, Any]:
    return _nullable({"type": "string", "enum": list(values)})


def _arn_schema(description: str) -> dict[str, Any]:
    return _nullable({"type": "string", "pattern": _ARN_PATTERN, "description": description})


def _output_schemas() -> list[dict[str, Any]]:
    bucket = {"type": "string", "pattern": f"^{_S3_BUCKET.pattern}$", "description": "S3 bucket name"}
    s3 = {
        "type": "object",
        "title": "S3",
        "required": ["type", "bucket"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "S3"},
            "bucket": bucket,
            "prefix": _nullable(
                {"type": "string", "description": "key prefix; the object is <prefix><jobId>.geojson"}
            ),
            "role": _arn_schema("IAM role to assume for the upload"),
        },
    }
    kinesis = {
        "type": "object",
        "title": "Kinesis",
        "required": ["type", "stream"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "Kinesis"},
            "stream": {
                "type": "string",
                "pattern": f"^{_KINESIS_STREAM.pattern}$",
                "description": "stream name",
            },
            "batchSize": _nullable({"type": "integer", "minimum": 1, "description": "features per record"}),
            "assumedRole": _arn_schema("IAM role to assume for put_records"),
        },
    }
    file = {
        "type": "object",
        "title": "File",
        "required": ["type", "path"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": "File"},
            "path": {
                "type": "string",
                "minLength": 1,
                "description": f"absolute directory under {ALLOWED_ROOTS_ENV}; writes <path>/<jobId>.geojson",
            },
            "format": _nullable(
                {
                    "type": "string",
                    "enum": list(FILE_OUTPUT_FORMATS),
                    "description": "GeoJSON (a FeatureCollection, default) or GeoJSONSeq (<jobId>.geojsonl, "
                    "one feature per line)",
                }
            ),
        },
    }
    return [s3, kinesis, file]


def _algorithm_schema() -> dict[str, Any]:
    threshold = {"type": "number", "minimum": 0, "maximum": 1}
    sigma = {"type": "number", "exclusiveMinimum": 0}
    options = {
        "iouThreshold": threshold,
        "skipBoxThreshold": threshold,
        "sigma": sigma,
        "polygonIou": {"type": "boolean"},
    }
    properties: dict[str, Any] = {"algorithmType": {"type": "string", "enum": list(ALGORITHM_TYPES)}}
    properties["algorithm_type"] = dict(properties["algorithmType"])
    for key, schema in options.items():
        properties[key] = _nullable(schema)
        properties[_ALGORITHM_KEYS[key]] = _nullable(schema)

    def when(algorithm: str, forbidden: Sequence[str]) -> dict[str, Any]:
        is_type = [
            {"required": [k], "properties": {k: {"const": algorithm}}}
            for k in ("algorithmType", "algorithm_type")
        ]
        return {"if": {"anyOf": is_type}, "then": {"properties": {k: {"type": "null"} for k in forbidden}}}

    soft_only = ["skipBoxThreshold", "skip_box_threshold", "sigma"]
    every_option = [*options, *(_ALGORITHM_KEYS[k] for k in options)]
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "oneOf": [{"required": ["algorithmType"]}, {"required": ["algorithm_type"]}],
        "allOf": [when("NMS", soft_only), when("NONE", sorted(set(every_option)))],
    }


def image_request_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the ImageRequest, for the Airflow trigger form and clients.

    Self-contained per property (no ``$ref``), so each property also works as an Airflow ``Param``.
    Rules that need more than one field or the file system (overlap < tile size, allowed roots, the
    endpoint host, the ROI geometry) are checked only by :func:`parse_image_request`.
    """
    default_post_processing = [
        {
            "step": FEATURE_DISTILLATION,
            "algorithm": {"algorithmType": "NMS", "iouThreshold": DEFAULT_IOU_THRESHOLD},
        }
    ]
    properties: dict[str, Any] = {
        "jobId": {
            "type": "string",
            "title": "Job id",
            "description": "Unique job id; also the result file name (<jobId>.geojson), so no '/', '\\' or '..'.",
            "minLength": 1,
            "maxLength": MAX_JOB_ID_LENGTH,
            "pattern": _JOB_ID_PATTERN,
        },
        "jobName": _nullable({"type": "string", "title": "Job name", "description": "Free-form job name."}),
        "jobArn": _nullable(
            {"type": "string", "title": "Job ARN", "description": "osml 2.1.1 job ARN; accepted and ignored."}
        ),
        "imageUrls": {
            "type": "array",
            "title": "Image URLs",
            "description": "Image to process: s3://bucket/key or an absolute path under "
            f"{ALLOWED_ROOTS_ENV}. Only the first URL is processed, as in osml.",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
        },
        "imageReadRole": _arn_schema("IAM role ARN assumed to read an s3:// image."),
        "imageProcessor": {
            "type": "object",
            "title": "Model",
            "description": "The model: a SageMaker endpoint name (SM_ENDPOINT) or an http(s) URL (HTTP_ENDPOINT).",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "type": _string_enum(MODEL_INVOKE_MODES),
                "assumedRole": _arn_schema("IAM role ARN assumed to invoke a SageMaker endpoint."),
            },
            "if": {"required": ["type"], "properties": {"type": {"const": "HTTP_ENDPOINT"}}},
            "then": {"properties": {"name": {"pattern": "^[hH][tT][tT][pP][sS]?://[^/]"}}},
            "else": {"properties": {"name": {"maxLength": 63, "pattern": f"^{_SM_ENDPOINT_NAME.pattern}$"}}},
        },
        "imageProcessorParameters": _nullable(
            {
                "type": "object",
                "title": "Model parameters",
                "description": "Extra SageMaker invoke_endpoint arguments, e.g. TargetVariant.",
                "additionalProperties": False,
                "properties": {key: _nullable({"type": "string"}) for key in MODEL_PARAMETER_KEYS},
                "default": {},
            }
        ),
        "imageProcessorTileSize": _nullable(
            {
                "type": ["integer", "string"],
                "title": "Tile size",
                "description": "Square tile edge in pixels (> 0).",
                "minimum": 1,
                "pattern": _POSITIVE_INT_STRING,
                "default": DEFAULT_TILE_SIZE,
            }
        ),
        "imageProcessorTileOverlap": _nullable(
            {
                "type": ["integer", "string"],
                "title": "Tile overlap",
                "description": "Minimum overlap between tiles in pixels: 0 <= overlap < tile size.",
                "minimum": 0,
                "pattern": _NON_NEGATIVE_INT_STRING,
                "default": DEFAULT_TILE_OVERLAP,
            }
        ),
        "imageProcessorTileFormat": {
            **_string_enum(TILE_FORMATS),
            "title": "Tile format",
            "description": "Encoding of the tiles sent to the model.",
            "default": DEFAULT_TILE_FORMAT,
        },
        "imageProcessorTileCompression": {
            **_string_enum(TILE_COMPRESSIONS),
            "title": "Tile compression",
            "description": "Compression of the encoded tiles.",
            "default": DEFAULT_TILE_COMPRESSION,
        },
        "rangeAdjustment": {
            **_string_enum(RANGE_ADJUSTMENTS),
            "title": "Range adjustment",
            "description": "NONE keeps the native pixel type; MINMAX or DRA scale every band to 8 bits "
            "(for models that want 8-bit input), with image-wide limits.",
            "default": "NONE",
        },
        "tilingStrategy": {
            **_string_enum(TILING_STRATEGIES),
            "title": "Tiling strategy",
            "description": "VARIABLE_OVERLAP (osml 2.3.0+: full tiles, overlap grows) or VARIABLE_TILE "
            "(osml 2.1.1: fixed overlap, truncated edge tiles).",
            "default": DEFAULT_TILING_STRATEGY,
        },
        "regionSize": _nullable(
            {
                "type": "integer",
                "title": "Region size",
                "description": "Region edge in pixels (>= tile size); empty uses the deployment default.",
                "minimum": 1,
            }
        ),
        "regionOfInterest": _nullable(
            {
                "type": "string",
                "title": "Region of interest",
                "description": "WKT POLYGON or MULTIPOLYGON in longitude/latitude; only this area is processed.",
            }
        ),
        "outputs": _nullable(
            {
                "type": "array",
                "title": "Outputs",
                "description": "Where results go: S3 {bucket, prefix, role}, Kinesis {stream, batchSize, "
                f"assumedRole}} or File {{path}} (under {ALLOWED_ROOTS_ENV}). Required unless outputBucket "
                "and outputPrefix are given.",
                "items": {"type": "object", "required": ["type"], "oneOf": _output_schemas()},
            }
        ),
        "outputBucket": _nullable(
            {
                "type": "string",
                "title": "Output bucket (legacy)",
                "description": "Legacy S3 bucket, used when outputs is empty.",
            }
        ),
        "outputPrefix": _nullable(
            {
                "type": "string",
                "title": "Output prefix (legacy)",
                "description": "Legacy S3 prefix, used with outputBucket.",
            }
        ),
        "featureProperties": _nullable(
            {
                "type": "array",
                "title": "Feature properties",
                "description": "Objects merged into every output feature's properties.",
                "items": {"type": "object"},
                "default": [],
            }
        ),
        "postProcessing": _nullable(
            {
                "type": "array",
                "title": "Post-processing",
                "description": "At most one FEATURE_DISTILLATION step: algorithmType NMS, SOFT_NMS or NONE.",
                "maxItems": 1,
                "items": {
                    "type": "object",
                    "required": ["step", "algorithm"],
                    "additionalProperties": False,
                    "properties": {"step": {"const": FEATURE_DISTILLATION}, "algorithm": _algorithm_schema()},
                },
                "default": default_post_processing,
            }
        ),
    }
    legacy = {
        "required": ["outputBucket", "outputPrefix"],
        "properties": {"outputBucket": {"type": "string"}, "outputPrefix": {"type": "string"}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "osml ImageRequest",
        "description": "One image, one model, one job (osml-model-runner 2.1.1 / 2.3.0 fields plus ours).",
        "type": "object",
        "required": ["jobId", "imageUrls", "imageProcessor"],
        "properties": properties,
        # unknown top-level keys are ignored, as upstream: no additionalProperties
        "anyOf": [
            {"required": ["outputs"], "properties": {"outputs": {"type": "array", "minItems": 1}}},
            legacy,
        ],
    }
