"""SageMakerRuntimeHook: every imageProcessorParameters mapping (botocore Stubber: moto cannot take binary
bodies) and the imageProcessor.assumedRole through STS (moto server)."""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from airflow_provider_osml.hooks.http_endpoint import ModelInvocationError
from airflow_provider_osml.hooks.sagemaker_runtime import SageMakerRuntimeHook
from airflow_provider_osml.request import MODEL_PARAMETER_KEYS

ANSWER = {"type": "FeatureCollection", "features": []}
PAYLOAD = b"\x89PNG\r\n\x1a\n binary tile bytes \x00\xff"


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def invoke_with(hook: SageMakerRuntimeHook, parameters: dict, expected: dict, answer: bytes | None = None):
    with Stubber(hook.conn) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": body(answer or json.dumps(ANSWER).encode()), "ContentType": "application/json"},
            expected_params={"EndpointName": "my-model", "Body": PAYLOAD, **expected},
        )
        result = hook.invoke(PAYLOAD, endpoint_name="my-model", parameters=parameters)
        stub.assert_no_pending_responses()
    return result


PARAMETERS = {
    "ContentType": "image/png",
    "Accept": "application/json",
    "CustomAttributes": "model_selection=flood,flood_volume=5",
    "TargetVariant": "flood-50",
    "TargetContainerHostname": "container-2",
    "InferenceComponentName": "detector-ic",
}


@pytest.mark.parametrize("key", sorted(PARAMETERS))
def test_each_parameter_is_passed_to_invoke_endpoint(key):
    hook = SageMakerRuntimeHook(aws_conn_id=None, region_name="us-east-1")
    assert invoke_with(hook, {key: PARAMETERS[key]}, {key: PARAMETERS[key]}) == ANSWER


def test_all_parameters_together_and_every_request_key_is_mapped():
    assert set(PARAMETERS) == set(MODEL_PARAMETER_KEYS)
    hook = SageMakerRuntimeHook(aws_conn_id=None, region_name="us-east-1")
    assert invoke_with(hook, PARAMETERS, PARAMETERS) == ANSWER


def test_adaptive_retries_and_errors():
    hook = SageMakerRuntimeHook(aws_conn_id=None, region_name="us-east-1")
    assert hook.conn.meta.config.retries["mode"] == "adaptive"
    with Stubber(hook.conn) as stub:
        stub.add_client_error("invoke_endpoint", "ModelError", "Received server error (500)", 424)
        with pytest.raises(ModelInvocationError, match="ModelError"):
            hook.invoke(PAYLOAD, endpoint_name="my-model")
    with pytest.raises(ModelInvocationError, match="not JSON"):
        invoke_with(hook, {}, {}, answer=b"<html>oops</html>")


def test_the_hook_counts_calls_retries_and_throttles():
    hook = SageMakerRuntimeHook(aws_conn_id=None, region_name="us-east-1")
    with Stubber(hook.conn) as stub:
        stub.add_response("invoke_endpoint", {"Body": body(json.dumps(ANSWER).encode()),
                                              "ResponseMetadata": {"RetryAttempts": 2}})
        stub.add_client_error("invoke_endpoint", "ThrottlingException", "Rate exceeded", 400,
                              response_meta={"RetryAttempts": 9})
        hook.invoke(PAYLOAD, endpoint_name="my-model")
        with pytest.raises(ModelInvocationError, match="ThrottlingException"):
            hook.invoke(PAYLOAD, endpoint_name="my-model")
    assert hook.counts.as_dict() == {"calls": 2, "retries": 11, "throttles": 1, "errors": 1}


def test_assumed_role_comes_from_sts(moto_server, monkeypatch):
    # the amazon provider never sends AssumeRole to the connection's global endpoint_url: name STS's own
    extra = {"endpoint_url": moto_server, "region_name": "us-east-1",
             "service_config": {"sts": {"endpoint_url": moto_server}}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}))
    role = "arn:aws:iam::123456789012:role/model-invoker"
    hook = SageMakerRuntimeHook(aws_conn_id="aws_default", assumed_role=role)
    credentials = hook.get_session().get_credentials().get_frozen_credentials()
    assert credentials.access_key != "testing" and credentials.token  # temporary STS credentials from moto
    assert hook.conn_config.role_arn == role
    assert invoke_with(hook, {"TargetVariant": "v1"}, {"TargetVariant": "v1"}) == ANSWER
    plain = SageMakerRuntimeHook(aws_conn_id="aws_default")
    assert plain.get_session().get_credentials().get_frozen_credentials().access_key == "testing"
