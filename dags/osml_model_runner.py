"""osml_model_runner: trigger with an ImageRequest as the run's conf (see docs/request.md)."""

from airflow_provider_osml.pipeline import osml_model_runner

dag = osml_model_runner()
