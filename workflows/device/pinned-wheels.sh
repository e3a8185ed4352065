#!/usr/bin/env bash
# Add to .whl/ the wheels the 'pinned' smoke corpus reads (the pure-Python exact pins of pyproject.toml,
# as optclaims.data.pinned finds them installed here), so that SMOKE=1 run-gpu.sh builds on the GPU host
# the same corpus as here. The shared wheelhouse.sh lacks some of them (seaborn, the SLURM plugin).
# Usage, from the project root after `bash ../shared/device/wheelhouse.sh`:  bash workflows/device/pinned-wheels.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
pins=$("$root/.venv/bin/python" -c 'from optclaims.data.pinned import pinned_sources
print(" ".join(s["name"] + "==" + s["version"] for s in pinned_sources()))')
installed() {  # NAME==VERSION of each named distribution, at the version installed here
  "$root/.venv/bin/python" -c 'import sys; from importlib.metadata import version
print(" ".join(n + "==" + version(n) for n in sys.argv[1:]))' "$@"
}
# What those pins need that neither wheelhouse.sh nor the GPU image has: the SLURM plugin imports its
# jobstep plugin when snakemake starts (every snakemake there failed without it).
needs=$(installed snakemake-executor-plugin-slurm-jobstep)
python3 -m pip download -q --no-deps --only-binary=:all: -d "$root/.whl" $pins $needs
# pandas at its pin, for the GPU image's CPython 3.12: the image has a pandas of unknown version (its pip list
# names no version), and the suite is tested on the pin. Needs only numpy >= 2.0.2 and python-dateutil, which
# the image has (numpy 2.5.2).
compiled=$(installed pandas)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$root/.whl" $compiled
echo "pinned wheels in .whl: $pins $needs $compiled"
