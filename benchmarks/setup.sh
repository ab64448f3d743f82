#!/usr/bin/env bash
# Builds benchmarks/.venv: the peers benchmarks/nms.py compares against (lsnms needs numba), kept out of
# the project environment and its constraints. Our own code needs only numpy and shapely from it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
# Pinned to the versions the figures in docs/performance.md were measured with.
"$here/.venv/bin/pip" install --quiet numpy==2.0.2 shapely==2.2.0 lsnms==0.5.0 numba==0.63.1 llvmlite==0.46.0
"$here/.venv/bin/python" -c "import lsnms, numba, shapely; print('numba', numba.__version__, 'shapely', shapely.__version__)"
