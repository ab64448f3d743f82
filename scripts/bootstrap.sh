#!/usr/bin/env bash
# Creates .venv (once) and installs the provider with the committed constraints. Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OSML_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/constraints/constraints-airflow-3.3.2-py3.11.txt"
EXTRAS="${1:-}"
# [gdal] is installed on its own (it builds against the system libgdal); the rest through pip extras
WANT_GDAL=0
case "$EXTRAS" in *gdal*) WANT_GDAL=1 ;; esac
PIP_EXTRAS="$(echo "$EXTRAS" | sed -E 's/,?gdal//; s/\[,/[/; s/^\[\]$//')"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11+ is required (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian/Ubuntu ship venv separately
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null;
  else echo "Install python3-venv first: sudo apt-get install python3-venv" >&2; exit 1; fi
fi

stamp="$VENV/.osml-installed$EXTRAS"
wanted="$(cat "$CONSTRAINTS" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "bootstrap: installing into $VENV (a few minutes the first time)" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e "$ROOT$PIP_EXTRAS"
  if [ "$WANT_GDAL" = 1 ] && ! "$VENV/bin/python" -c 'from osgeo import gdal_array' 2>/dev/null; then
    if ! command -v gdal-config >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq libgdal-dev >/dev/null
    fi
    if command -v gdal-config >/dev/null; then
      "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" setuptools wheel
      # bindings must equal the system libgdal; no build isolation so gdal_array builds against our numpy
      "$VENV/bin/python" -m pip install -q --no-build-isolation "gdal==$(gdal-config --version)"
    else
      echo "bootstrap: no libgdal-dev (gdal-config): skipping the [gdal] extra; osgeo-only tests will skip." \
        "Install it with: sudo apt-get install libgdal-dev" >&2
    fi
  fi
  echo "$wanted" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
