#!/usr/bin/env bash
# Runs the demo: a generated scene, the blobs reference model, the osml_model_runner DAG on SQLite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" ""
cd "$ROOT"
exec osml-airflow demo "$@"
