#!/usr/bin/env bash
# A real CeleryExecutor deployment on 127.0.0.1 (PostgreSQL :5432, Redis :6379) for trying things by hand:
#   bash scripts/celery-harness.sh up --workers 2 [--queues default,osml-inference --queues osml-inference] [--env K=V]
# Ctrl-C stops every process and drops the database. See docs/deploy-celery.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" "[test,celery,kubernetes]"
cd "$ROOT"
exec python -m tests.integration.harness "$@"
