"""Per-request IAM roles (imageReadRole, imageProcessor.assumedRole, outputs[].role) on amazon-provider hooks."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


def assume_role(hook: AwsBaseHook, role_arn: str | None) -> AwsBaseHook:
    """Make the hook assume ``role_arn`` (STS AssumeRole) on top of its connection's credentials."""
    if role_arn:
        config = hook.conn_config
        config.role_arn = role_arn
        config.assume_role_method = config.assume_role_method or "assume_role"
    return hook
