"""airflow-provider-osml: osml-model-runner rebuilt on Apache Airflow."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "airflow-provider-osml",
        "name": "OversightML (osml-model-runner on Airflow)",
        "description": "Runs AI/ML models over very large satellite images: tiling, model invocation, "
        "geolocation, NMS and sinks, mapped per image region.",
        "versions": [__version__],
        "hooks": [
            {
                "integration-name": "OversightML",
                "python-modules": [
                    "airflow_provider_osml.hooks.http_endpoint",
                    "airflow_provider_osml.hooks.sagemaker_runtime",
                ],
            }
        ],
    }
