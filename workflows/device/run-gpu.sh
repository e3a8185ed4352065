#!/usr/bin/env bash
# The project's runner for a GPU host without a package index (adapted from ../shared/device/run-gpu.sh:
# the results come back packed as a reference). From the project root, with .whl/ (wheelhouse.sh) beside it:
#   bash workflows/device/run-gpu.sh CLAIM [CLAIM...]   the gpu scale of those claims, packed by
#                                                       `optclaims pack-reference` into $OUT/reference-gpu.tgz
#   SMOKE=1 bash workflows/device/run-gpu.sh            the smoke suite on CUDA (run_overrides device: cuda);
#                                                       its 'pinned' corpus needs workflows/device/pinned-wheels.sh
#   NIGHTLY=1 bash workflows/device/run-gpu.sh          the smoke nightly on the host's CPU against the committed
#                                                       baseline (another machine: issue 14); needs pinned-wheels.sh
#   BENCH=1 bash workflows/device/run-gpu.sh            only `optclaims bench-population`
# Installs the wheels into /tmp/site, runs within BUDGET_S seconds (default 500), and leaves in $OUT:
# device.txt (GPU, driver, versions, timings), run.log, and reference-gpu.tgz (at most 16 MiB) or, when
# the pack refuses (a claim without verdict, an archive too big), results-gpu.tgz to find out why.
# Back on a CPU machine: `make file-reference ARCHIVE=.../reference-gpu.tgz`, then commit.
set -uo pipefail
: "${OUT:?set OUT to the folder for what comes back}"
budget=${BUDGET_S:-500}
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD/src:/tmp/site PATH=/tmp/site/bin:$PATH HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)'
  echo "install seconds: $(( $(date +%s) - t0 ))"; } | tee "$OUT/device.txt"
if [ -n "${BENCH:-}" ]; then
  optclaims bench-population 2>&1 | tee "$OUT/run.log"
  exit 0
fi
left=$(( budget - ($(date +%s) - t0) ))
raw_results() {  # results/<scale> without checkpoints, token shards or corpus
  tar czf "$OUT/results-$1.tgz" --exclude='*.safetensors' --exclude='train_state.pt' --exclude='tokens' \
    --exclude='corpus' --exclude='*.bin' "results/$1" 2>/dev/null
}
if [ -n "${NIGHTLY:-}" ]; then  # the smoke nightly on this host's CPU: a second machine for the committed baseline
  rm -rf results/smoke/runs results/smoke/populations
  CUDA_VISIBLE_DEVICES= timeout "$left" snakemake nightly --cores all --forceall --config scale=smoke > "$OUT/run.log" 2>&1
  echo "snakemake rc=$?, seconds since start: $(( $(date +%s) - t0 ))" | tee -a "$OUT/device.txt"
  cp results/smoke/regression/report.md "$OUT/regression-report.md" 2>/dev/null
  head -12 results/smoke/regression/report.md; tail -5 "$OUT/run.log"; exit 0
fi
if [ -n "${SMOKE:-}" ]; then
  timeout "$left" snakemake --cores all --config scale=smoke "run_overrides={device: cuda}" --resources gpu=1 \
    --rerun-incomplete --keep-going > "$OUT/run.log" 2>&1
  echo "snakemake rc=$?, seconds since start: $(( $(date +%s) - t0 ))" | tee -a "$OUT/device.txt"
  tail -25 "$OUT/run.log"; raw_results smoke; ls -la "$OUT"; exit 0
fi
[ $# -ge 1 ] || { echo "name at least one claim"; exit 2; }
claims=$(IFS=,; echo "$*")
timeout "$left" snakemake --cores all --config scale=gpu "claims=[$claims]" --resources gpu=1 \
  --rerun-incomplete --keep-going > "$OUT/run.log" 2>&1
rc=$?
echo "snakemake rc=$rc, seconds since start: $(( $(date +%s) - t0 ))" | tee -a "$OUT/device.txt"
tail -25 "$OUT/run.log"
optclaims pack-reference --scale-dir results/gpu --claims "$claims" --out "$OUT/reference-gpu.tgz" 2>&1 \
  | tee -a "$OUT/device.txt"
[ -f "$OUT/reference-gpu.tgz" ] || raw_results gpu
ls -la "$OUT"
