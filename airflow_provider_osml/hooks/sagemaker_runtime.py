"""SageMaker real-time endpoints (the amazon provider has no sagemaker-runtime hook)."""

from __future__ import annotations

import json
from functools import cached_property

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import BotoCoreError, ClientError

from airflow_provider_osml.hooks.http_endpoint import ModelInvocationError
from airflow_provider_osml.hooks.invocation_counts import InvocationCounts
from airflow_provider_osml.request import MODEL_PARAMETER_KEYS

# imageProcessorParameters keys are passed through to InvokeEndpoint unchanged.
INVOKE_PARAMETERS = MODEL_PARAMETER_KEYS
# error codes botocore's adaptive mode treats as throttling, as far as InvokeEndpoint returns them
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})


class SageMakerRuntimeHook(AwsBaseHook):
    """Thin client for ``sagemaker-runtime``; botocore's adaptive retry mode handles throttling.

    :param aws_conn_id: the AWS connection; ``role_arn`` in its extras, or ``assumed_role`` here, is assumed.
    """

    def __init__(self, *args, assumed_role: str | None = None, **kwargs) -> None:
        kwargs["client_type"] = "sagemaker-runtime"
        config = kwargs.pop("config", None)
        kwargs.setdefault("config", config or _adaptive_retries())
        super().__init__(*args, **kwargs)
        self.assumed_role = assumed_role
        self.counts = InvocationCounts()

    @cached_property
    def conn_config(self):
        """The connection's settings, with ``imageProcessor.assumedRole`` as the role to assume."""
        config = super().conn_config
        if self.assumed_role:
            config.role_arn = self.assumed_role
            config.assume_role_method = config.assume_role_method or "assume_role"
        return config

    def invoke(self, payload: bytes, *, endpoint_name: str, parameters: dict | None = None) -> dict:
        """Invoke an endpoint with one encoded tile; return the parsed JSON answer."""
        kwargs = {k: v for k, v in (parameters or {}).items() if k in INVOKE_PARAMETERS}
        try:
            response = self.conn.invoke_endpoint(EndpointName=endpoint_name, Body=payload, **kwargs)
            body = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            metadata = getattr(exc, "response", {}) or {}
            code = metadata.get("Error", {}).get("Code", "")
            self.counts.add(calls=1, errors=1, throttles=int(code in THROTTLING_CODES),
                            retries=metadata.get("ResponseMetadata", {}).get("RetryAttempts", 0))
            raise ModelInvocationError(f"SageMaker InvokeEndpoint failed: {exc}") from exc
        self.counts.add(calls=1, retries=response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ModelInvocationError(f"model answer is not JSON: {exc}") from exc


def _adaptive_retries():
    from botocore.config import Config

    return Config(retries={"max_attempts": 10, "mode": "adaptive"})
