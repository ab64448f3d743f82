#!/usr/bin/env bash
# Installs everything (with test extras) and runs lint and the whole test suite, including the integration
# tests on a real CeleryExecutor deployment (tests/integration: PostgreSQL and Redis on 127.0.0.1; they skip
# with the reason when those are not running, unless OSML_IT_REQUIRED=1). Only them: bash scripts/test.sh -m integration
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" "[test,gdal,celery,kubernetes]"
cd "$ROOT"
ruff check airflow_provider_osml dags tests benchmarks
exec python -m pytest -q -p no:cacheprovider "$@"
