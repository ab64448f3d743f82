#!/usr/bin/env bash
# Builds benchmarks/.venv: the peers benchmarks/nms.py compares against (lsnms needs numba), kept out of
# the project environment and its constraints. Our own code needs only numpy and shapely from it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet "numpy<2.1" "shapely>=2.0" lsnms
"$here/.venv/bin/python" -c "import lsnms, numba, shapely; print('lsnms', lsnms.__version__ if hasattr(lsnms, '__version__') else '?', 'numba', numba.__version__, 'shapely', shapely.__version__)"
