"""What every task of ``osml_model_runner`` shares: settings, the parsed request, the work store, image access."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_osml import imagery
from airflow_provider_osml.operators.settings import DeploymentSettings, load_settings
from airflow_provider_osml.operators.work_store import WorkStore
from airflow_provider_osml.request import ImageRequest, parse_image_request

# Work-store keys of one job
SELECTED_FEATURES = "features.geojson"
STATUS_RECORD = "status.json"
PLAN = "plan.json"
SELECTION = "selection.json"
FAILED_TILES = "failed_tiles.json"
STAGES = "stages.json"  # issue 6: seconds per task, for the status record


@dataclass
class TaskContext:
    """What every task rebuilds from the validated request: settings, request, work store."""

    settings: DeploymentSettings
    request: ImageRequest
    store: WorkStore

    @classmethod
    def from_validated(cls, validated: dict) -> TaskContext:
        settings = load_settings()
        request = parse_image_request(validated["request"], allowed_roots=list(settings.allowed_roots))
        return cls(settings, request, WorkStore(validated["workStore"], request.job_id))


def s3_access(settings: DeploymentSettings, role: str | None = None) -> imagery.S3Access:
    """Credentials and endpoint for GDAL ``s3://`` reads, from the AWS connection."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from airflow_provider_osml.hooks.aws_roles import assume_role

    hook = assume_role(AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="s3"), role)
    return imagery.S3Access(session=hook.get_session(), endpoint_url=hook.conn_config.endpoint_url)


def open_request_image(ctx: TaskContext):
    access = s3_access(ctx.settings, ctx.request.image_read_role) if ctx.request.image_url.startswith("s3://") else None
    return imagery.open_image(ctx.request.image_url, s3=access)
