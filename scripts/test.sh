#!/usr/bin/env bash
# Installs everything (with test extras) and runs lint and the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" "[test,gdal]"
cd "$ROOT"
ruff check airflow_provider_osml dags tests benchmarks
exec python -m pytest -q -p no:cacheprovider "$@"
