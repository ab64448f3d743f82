"""The work store: where features travel between tasks, under deterministic keys per job and region.

A retried task overwrites its own object instead of adding a duplicate. ``file://`` on one machine,
``s3://<conn_id>@bucket/prefix`` when workers are distributed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

from airflow.sdk import ObjectStoragePath


class WorkStore:
    def __init__(self, root: str, job_id: str) -> None:
        self.root = ObjectStoragePath(root.rstrip("/"))
        self.job_root = self.root / job_id

    def path(self, *parts: str) -> ObjectStoragePath:
        return self.job_root.joinpath(*parts)

    def write_json(self, name: str, value: object) -> str:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.protocol in ("file", "local", ""):
            # write then rename, so a reader never sees half a file after a killed task
            partial = self.path(f"{name}.partial-{os.getpid()}")
            partial.write_text(json.dumps(value))
            os.replace(partial.path, target.path)
        else:
            target.write_text(json.dumps(value))
        return str(target)

    def read_json(self, name: str) -> object:
        return json.loads(self.path(name).read_text())

    def remove(self, name: str) -> None:
        target = self.path(name)
        if target.exists():
            target.unlink()

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    @contextlib.contextmanager
    def local_file(self, name: str) -> Iterator[str]:
        """A local path for ``name``: the file itself on ``file://``, a temporary copy otherwise."""
        source = self.path(name)
        if source.protocol in ("file", "local", ""):
            yield source.path
            return
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, os.path.basename(name))
            with source.open("rb") as reader, open(local, "wb") as writer:
                shutil.copyfileobj(reader, writer, 8 * 1024 * 1024)
            yield local

    def open_for_write(self, name: str):
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.open("w")
