"""``{"type": "S3", "bucket", "prefix", "role"}``: one object per job at ``<prefix>/<jobId>.geojson``.

The upload streams the work-store file in 8 MB parts (boto3 managed transfer: multipart above 8 MB), so a
million features never become one string; a failed multipart upload is aborted by boto3, and a re-run
writes the same key again.
"""

from __future__ import annotations

import posixpath
from functools import cached_property

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from airflow_provider_osml.hooks.aws_roles import assume_role

PART_SIZE = 8 * 1024 * 1024


class S3Sink:
    def __init__(self, *, bucket: str, prefix: str = "", role: str | None = None, aws_conn_id: str | None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.role = role
        self.aws_conn_id = aws_conn_id
        self.part_size = PART_SIZE

    def key(self, job_id: str) -> str:
        # the reference's key: os.path.join(prefix, job_id.split("/")[-1] + ".geojson")
        return posixpath.join(self.prefix, job_id.split("/")[-1] + ".geojson")

    def target(self, job_id: str) -> str:
        return f"s3://{self.bucket}/{self.key(job_id)}"

    @cached_property
    def hook(self) -> S3Hook:
        hook = S3Hook(
            aws_conn_id=self.aws_conn_id,
            extra_args={"ACL": "bucket-owner-full-control", "ContentType": "application/geo+json"},
            transfer_config_args={
                "multipart_threshold": self.part_size,
                "multipart_chunksize": self.part_size,
                "max_concurrency": 4,
            },
        )
        return assume_role(hook, self.role)

    def write(self, job_id: str, geojson_file: str) -> str:
        """Upload the FeatureCollection file (streamed, multipart above ``part_size``); a re-run overwrites."""
        self.hook.load_file(geojson_file, key=self.key(job_id), bucket_name=self.bucket, replace=True)
        return self.target(job_id)
