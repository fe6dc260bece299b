#!/usr/bin/env bash
# The prepared GPU check of raytaskaff: run from the project's root on a machine with a CUDA GPU
# and no network (docs/development.md, "On a GPU machine", says how, step by step). The default
# steps take about 8 minutes (their bounds add up to 480 s, after at most 90 s rendering their
# data). A step that fails or runs out of time
# is marked in the table and the next one runs; at the end the script exits 1 if any step failed
# or any network fell back from stacking (the training mode its result records), else 0. Without
# a CUDA device it exits 2 at once, in one line. Logs go to $GPU_CHECK_OUT (default gpu-check/),
# one per step, and the table to its summary.txt.
#
#   ../shared/tools/offline-wheels     # once, on a machine with a network: writes .whl/
#   bash bench/gpu_check.sh            # on the GPU machine: the default steps
#   GPU_CHECK_STEPS="pytest-gpu fused-256" bash bench/gpu_check.sh
#                                      # any list of step names, the optional ones included
#
# Default steps: `pytest -m gpu` (the CUDA training loop, a fused bundle on CUDA against separate
# runs and stacked, networks loaded onto CUDA, the smoke sweep through Tune at 0.25 GPU per run to
# its report); the flagship's shape (bench.flagship: taskonomy-5's 15 STL and pair networks of
# seed 0, large, 256 px, fused, 1 epoch of 320 synthetic views at batch 16, evaluation batch 32;
# networks fused, and the measured peak of CUDA memory against the memory model's); one seed's 16 networks of the default as one
# bundle against the same 16 one after another in one process, and through the engine against
# them packed 8 per GPU and one at a time; the default's training stage bundled (4 bundles per
# GPU); the smoke sweep at 1 GPU per run from the command line.
# Optional steps (named in GPU_CHECK_STEPS): bench.packing and bench.training (packing, training);
# the per-kind cost factors (kinds: bench.training --kinds, recorded into throughput.json);
# the feed (data-256, roofline-64, roofline-256): 2048 synthetic views of 256 px, then the large
# network at 256 px, 1 and 5 tasks, fed by the reader on the machine's cores against its roofline
# on resident batches (bench.training --resident), with the probes' overhead, at batch 64 and 256.
#
# Adding a step: one `step NAME SECONDS COMMAND...` line below, its name in `default_steps` if
# it runs by default, and the folder of any result store it writes in `stores` (checked for
# networks that fell back).
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
py=${PYTHON:-python3}

# no CUDA device: one line, exit 2, nothing written or installed
device=$("$py" - 2>&1 <<'PY'
try:
    import torch
except Exception as e:
    raise SystemExit(f"torch does not import ({type(e).__name__}: {e})")
if not torch.cuda.is_available():
    raise SystemExit(f"no CUDA device (torch {torch.__version__}: torch.cuda.is_available() is False)")
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
PY
) || { echo "gpu_check: ${device##*$'\n'}" >&2; exit 2; }
device=${device##*$'\n'}

out=${GPU_CHECK_OUT:-gpu-check}
mkdir -p "$out"
rm -f "$out"/*.log  # a log of an earlier check would read as this one's
summary="$out/summary.txt"
: > "$summary"
if compgen -G ".whl/*.whl" > /dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl \
        || { echo "gpu_check: the wheels of .whl/ did not install" >&2; exit 2; }
fi
export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
ray=$("$py" -c "import ray, captum; print(ray.__version__)" 2>/dev/null) \
    || { echo "gpu_check: Ray or captum does not import: run ../shared/tools/offline-wheels on a machine with a network first" >&2; exit 2; }
echo "$device, ray $ray" | tee -a "$summary"

default_steps=" pytest-gpu fused-256 loop-16 seed-16 default-auto smoke-1gpu "
failed=()
# step NAME SECONDS COMMAND...: run COMMAND bounded to SECONDS, log to $out/NAME.log, add a table row
step() {
    local name=$1 limit=$2; shift 2
    local start rc status
    [[ " ${GPU_CHECK_STEPS:-$default_steps} " == *" $name "* ]] || return 0
    start=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status="TIMEOUT (${limit} s)" ;; *) status="FAILED ($rc)" ;; esac
    printf '%-16s %-18s %6d s\n' "$name" "$status" $(( ($(date +%s%N) - start) / 1000000000 )) | tee -a "$summary"
    if [[ $status != ok ]]; then
        failed+=("$name")
        tail -5 "$out/$name.log" | tee -a "$summary"
    fi
}

# a copy of a sweep config with its resources and paths changed: config_with SRC DST KEY=VALUE...
config_with() {
    "$py" - "$@" <<'PY'
import sys, yaml
src, dst, *pairs = sys.argv[1:]
config = yaml.safe_load(open(src))
for pair in pairs:
    key, value = pair.split("=", 1)
    section, name = key.split(".")
    config.setdefault(section, {})[name] = yaml.safe_load(value)
yaml.safe_dump(config, open(dst, "w"))
PY
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
config_with sweeps/smoke.yaml "$work/smoke-1.yaml" resources.gpus_per_run=1 data.path="$work/smoke-data"
stores=("$work/smoke-1/store")

# the datasets the benchmarks read, rendered before their time bounds start (not a step of its
# own: every other step needs them)
timeout 90 "$py" -c "
import os
from raytaskaff.config import load_config
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.pipeline import prepare_data
from bench.flagship import dataset
prepare_data(load_config('sweeps/default.yaml'))
if not os.path.exists('data/synthetic-32/manifest.json'):
    generate('data/synthetic-32', SynthConfig(n=5000, size=32, seed=0), workers=min(8, os.cpu_count() or 1))
dataset('data/synthetic-256-320-flat', 320, 256)
" > "$out/data.log" 2>&1 || { echo "gpu_check: the datasets did not render (see $out/data.log)" | tee -a "$summary" >&2; exit 1; }

step pytest-gpu 110 "$py" -m pytest -m gpu -q -p no:cacheprovider
# taskonomy-5's networks at batches one 80 GB GPU holds stacked (its own 64 and 256: 120 and 202 GiB, predicted)
step fused-256 120 "$py" -m bench.flagship --views 320 --size 256 --epochs 1 --batch-size 16 --eval-batch-size 32
step loop-16 35 "$py" -m bench.bundles --loop cuda --epochs 4
step seed-16 110 "$py" -m bench.bundles --gpus 1 --seeds 0 --kinds stl,pair,all --modes auto,packed,one
step default-auto 60 "$py" -m bench.bundles --gpus 1 --gpus-per-bundle 0.25 --modes auto
step smoke-1gpu 45 "$py" -m raytaskaff.sweep --config "$work/smoke-1.yaml" --out "$work/smoke-1"
step packing 35 "$py" -m bench.packing --per-gpu 1,8 --epochs 1
step training 45 "$py" -m bench.training --device cuda --tasks 1,5
# the per-kind cost factors on the GPU (pair, all-task and label injection over STL, side by side):
# celeba's pooled heads at its 64 px and batch 256, the default's dense decoders; recorded into
# raytaskaff/throughput.json, copied to $out for the dry run's table
step kinds 60 bash -c "'$py' -m bench.training --kinds --device cuda --model tag_celeba --heads pooled --size 64 \
    --batch-size 256 --record && '$py' -m bench.training --kinds --device cuda --model small --size 32 --record \
    && cp raytaskaff/throughput.json '$out/'"

# the feed: gather threads on all but two of the machine's cores
d256=${GPU_CHECK_DATA:-data/synthetic-256-2048}
threads=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
step data-256 90 "$py" -c "
import os
from raytaskaff.data.synth import SynthConfig, generate
if not os.path.exists('$d256/manifest.json'):
    generate('$d256', SynthConfig(n=2048, size=256, seed=0), workers=os.cpu_count() or 1)
"
step roofline-64 100 "$py" -m bench.training --device cuda --model large --data "$d256" --tasks 1,5 --resident \
    --gather-threads "$threads" --batch-size 64
step roofline-256 100 "$py" -m bench.training --device cuda --model large --data "$d256" --tasks 1,5 --resident \
    --gather-threads "$threads" --batch-size 256

echo "--- the benchmarks' rows ---" | tee -a "$summary"
for name in fused-256 loop-16 seed-16 default-auto packing training kinds roofline-64 roofline-256; do
    [[ -f $out/$name.log ]] && sed -n '/^measure/,$p' "$out/$name.log" | tee -a "$summary"
done

# how the networks were trained: every result the steps stored records it (RunResult.training)
fell=$("$py" - "${stores[@]}" <<'PY'
import json, sys
from pathlib import Path
for store in sys.argv[1:]:
    for path in sorted(Path(store).glob("**/result.json")):
        result = json.loads(path.read_text()).get("result", {})
        if result.get("training") == "fell back":
            print(f"{'+'.join(result['spec']['tasks'])} seed {result['seed']}: fell back ({result.get('training_reason')})")
PY
)
if [[ -n $fell ]]; then
    failed+=("fell-back")
    { echo "networks that fell back from stacking:"; echo "$fell"; } | tee -a "$summary"
fi
if (( ${#failed[@]} )); then
    echo "gpu_check: FAILED: ${failed[*]}" | tee -a "$summary"
    exit 1
fi
echo "gpu_check: every step passed on $device" | tee -a "$summary"
