#!/usr/bin/env bash
# The project's runner for a GPU host without a package index (adapted from ../shared/device/run-gpu.sh:
# the results come back packed as a reference). From the project root, with .whl/ beside it
# (`bash ../shared/device/wheelhouse.sh && bash workflows/device/pinned-wheels.sh`):
#   bash workflows/device/run-gpu.sh CLAIM [CLAIM...]   the gpu scale of those claims, packed by
#                                                       `optclaims pack-reference` into $OUT/reference-gpu.tgz
#   BENCH=1 ...                                         also `optclaims bench-population` (K = $BENCH_MEMBERS,
#                                                       default 1,8; at most $BENCH_S seconds, default 150; then
#                                                       the small shape at batch 8, eager, within 60 s), its rows
#                                                       in $OUT/throughput-rows.csv for workflows/throughput.csv,
#                                                       alone on the GPU: after the claims, which leave it at
#                                                       least $BENCH_RESERVE_S seconds (default 90); first when
#                                                       no claim is named. The claims go first because their
#                                                       cost rests on estimated rows and a verdict cut short is
#                                                       lost, while the bench records row by row.
#   NIGHTLY=1 ...                                       meanwhile the smoke nightly on the host's CPU
#                                                       ($NIGHTLY_CORES cores, default 6, GPU hidden, in a copy of
#                                                       the checkout) against the committed baseline: another
#                                                       machine for it (issue 14)
#   SMOKE=1 bash workflows/device/run-gpu.sh            the smoke suite on CUDA (run_overrides device: cuda), alone
# The modes combine, so one call of the device tool spends a slot on all three:
#   BENCH=1 NIGHTLY=1 bash workflows/device/run-gpu.sh clip_norm
# Everything ends within BUDGET_S seconds (default 500) of the start, install included. Leaves in $OUT:
# device.txt (GPU, driver, versions, timings of each part), run.log (the claims' snakemake), bench.log,
# nightly.log and nightly-report.md, and reference-gpu.tgz (at most 16 MiB) or, when the pack refuses
# (a claim without verdict, an archive too big), results-gpu.tgz to find out why.
# Back on a CPU machine: `make file-reference ARCHIVE=.../reference-gpu.tgz`, append throughput-rows.csv's
# rows (not its header) to workflows/throughput.csv, then commit.
set -uo pipefail
: "${OUT:?set OUT to the folder for what comes back}"
budget=${BUDGET_S:-500}
t0=$(date +%s)
left() {  # seconds of the budget still free after a margin of $1, at least 1 (timeout 0 would mean none)
  local s=$(( budget - ($(date +%s) - t0) - ${1:-0} )); echo $(( s > 1 ? s : 1 ))
}
note() { echo "$*" | tee -a "$OUT/device.txt"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD/src:/tmp/site PATH=/tmp/site/bin:$PATH HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# a wheel missing from .whl fails here in seconds, not in every snakemake of the slot
python3 -c 'import snakemake.cli, lm_eval.evaluator, datasets, pandas, optclaims.cli' 2>&1 | tail -3 | tee "$OUT/device.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "the wheels do not import (above): add what is missing to workflows/device/pinned-wheels.sh"; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch, sys, pandas; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
    "pandas", pandas.__version__, "from", pandas.__file__)'
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "install seconds: $(( $(date +%s) - t0 ))"; } | tee "$OUT/device.txt"
raw_results() {  # results/<scale> without checkpoints, token shards or corpus
  tar czf "$OUT/results-$1.tgz" --exclude='*.safetensors' --exclude='train_state.pt' --exclude='tokens' \
    --exclude='corpus' --exclude='*.bin' "results/$1" 2>/dev/null
}

if [ -n "${SMOKE:-}" ]; then
  timeout "$(left)" snakemake --cores all --config scale=smoke "run_overrides={device: cuda}" --resources gpu=1 \
    --rerun-incomplete --keep-going > "$OUT/run.log" 2>&1
  note "smoke on cuda: snakemake rc=$?, seconds since start: $(( $(date +%s) - t0 ))"
  tail -25 "$OUT/run.log"; raw_results smoke; ls -la "$OUT"; exit 0
fi

run_bench() {  # alone on the GPU: nothing else of this script uses it meanwhile
  local bench_s=${BENCH_S:-150}
  timeout "$(( $(left) < bench_s ? $(left) : bench_s ))" optclaims bench-population \
    --members "${BENCH_MEMBERS:-1,8}" --json "$OUT/bench.json" --record "$OUT/throughput-rows.csv" > "$OUT/bench.log" 2>&1
  note "bench-population rc=$?, seconds since start: $(( $(date +%s) - t0 ))"
  # the launch-bound end of the cost table: a small model at a batch of 8, eager (no gpu-scale population compiles)
  timeout "$(( $(left) < 60 ? $(left) : 60 ))" optclaims bench-population --shape small --batch-size 8 --members 1,16 \
    --no-compile --record "$OUT/throughput-rows.csv" >> "$OUT/bench.log" 2>&1
  note "bench-population (small, batch 8) rc=$?, seconds since start: $(( $(date +%s) - t0 ))"
  tail -16 "$OUT/bench.log"
}
bench_reserve=0
if [ -n "${BENCH:-}" ]; then
  if [ $# -ge 1 ]; then bench_reserve=${BENCH_RESERVE_S:-90}; else run_bench; fi
fi

cores=$(nproc)
nightly_pid=
if [ -n "${NIGHTLY:-}" ]; then  # the CPU's share: a copy of the checkout, so the two snakemakes share nothing
  nightly_cores=${NIGHTLY_CORES:-6}
  [ $# -ge 1 ] || nightly_cores=$cores
  cores=$(( cores - nightly_cores > 2 ? cores - nightly_cores : 2 ))
  copy=/tmp/nightly-checkout
  rm -rf "$copy" && mkdir -p "$copy"
  tar --exclude=./.whl --exclude=./results/gpu --exclude=./results/smoke --exclude=./.snakemake -cf - . | tar -xf - -C "$copy"
  ( cd "$copy" && CUDA_VISIBLE_DEVICES= PYTHONPATH=$copy/src:/tmp/site timeout "$(left)" \
      snakemake nightly --cores "$nightly_cores" --forceall --config scale=smoke > "$OUT/nightly.log" 2>&1
    echo "nightly on $nightly_cores CPU cores: snakemake rc=$?, seconds since start: $(( $(date +%s) - t0 ))" >> "$OUT/device.txt"
    cp results/smoke/regression/report.md "$OUT/nightly-report.md" 2>/dev/null ) &
  nightly_pid=$!
fi

if [ $# -ge 1 ]; then
  claims=$(IFS=,; echo "$*")
  # the pack and its archive need a few seconds after the claims' snakemake ends
  timeout "$(left $(( 20 + bench_reserve )))" snakemake --cores "$cores" --config scale=gpu "claims=[$claims]" --resources gpu=1 \
    --rerun-incomplete --keep-going > "$OUT/run.log" 2>&1
  rc=$?
  note "gpu scale of $claims on $cores cores: snakemake rc=$rc, seconds since start: $(( $(date +%s) - t0 ))"
  # cut off (124): no job of it may go on holding the GPU or writing results/gpu while the pack and the bench run
  # (the nightly's jobs name results/smoke in their copy of the checkout)
  [ "$rc" -ne 124 ] || { pkill -f 'results/gpu/' && sleep 3; pkill -9 -f 'results/gpu/'; }
  tail -25 "$OUT/run.log"
  optclaims pack-reference --scale-dir results/gpu --claims "$claims" --out "$OUT/reference-gpu.tgz" 2>&1 \
    | tee -a "$OUT/device.txt"
  [ -f "$OUT/reference-gpu.tgz" ] || raw_results gpu
  [ -z "${BENCH:-}" ] || run_bench
elif [ -z "${BENCH:-}${NIGHTLY:-}" ]; then
  echo "name at least one claim, or set BENCH=1, NIGHTLY=1 or SMOKE=1"; exit 2
fi

if [ -n "$nightly_pid" ]; then
  wait "$nightly_pid"
  head -14 "$OUT/nightly-report.md" 2>/dev/null; tail -5 "$OUT/nightly.log"
fi
ls -la "$OUT"
