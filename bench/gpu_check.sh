#!/usr/bin/env bash
# The prepared GPU check of raytaskaff: run from the project's root on a machine with a CUDA GPU
# and no network, within 9 minutes (the steps' bounds add up to 545 s). A step that fails or runs
# out of time is marked in the table and the next one runs. Logs go to $GPU_CHECK_OUT (default
# gpu-check/), one per step, and the table to its summary.txt.
#
#   ../shared/tools/offline-wheels     # once, on a machine with a network: writes .whl/
#   bash bench/gpu_check.sh            # on the GPU machine: the bundle steps (about 8 minutes)
#   GPU_CHECK_STEPS="pytest-gpu data-256 roofline-64 roofline-256" bash bench/gpu_check.sh
#                                      # the feed steps (about 6 minutes); any list of step names
#
# Steps: install the wheels of .whl/ (Ray, captum, ... for an image that has torch but not them),
# `pytest -m gpu` (the CUDA training loop, a fused bundle on CUDA against separate runs, networks
# loaded onto CUDA, the smoke sweep through Tune at 0.25 GPU per run to its report), the smoke
# sweep at 1 GPU per run from the command line, one seed's 16 networks of the default as one
# bundle against the same 16 one after another in one process, and through the engine against
# them packed 8 per GPU and one at a time, the default's training stage bundled (4 bundles per
# GPU), bench.packing, bench.training and its per-kind cost factors (--kinds). The feed steps
# (not run unless named in GPU_CHECK_STEPS): 2048 synthetic views of 256 px, then the large network at 256 px, 1 and 5
# tasks, fed by the reader on the machine's cores against its roofline on resident batches
# (bench.training --resident), with the probes' overhead, at batch 64 and at batch 256.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${GPU_CHECK_OUT:-gpu-check}
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
py=${PYTHON:-python3}

if compgen -G ".whl/*.whl" > /dev/null && [[ -z ${GPU_CHECK_ON_CPU:-} ]]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --target .site .whl/*.whl || { echo "wheels did not install" >&2; exit 2; }
fi
export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# GPU_CHECK_ON_CPU=1 rehearses the plumbing on a machine without a GPU (Ray is told of one GPU,
# trials train on the CPU, most steps run out of time)
"$py" -c "import os, torch, ray; assert torch.cuda.is_available() or os.environ.get('GPU_CHECK_ON_CPU'), 'no CUDA device'; \
print('torch', torch.__version__, 'ray', ray.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU rehearsal')" \
    | tee -a "$summary" || { echo "no CUDA device, or Ray is missing" >&2; exit 2; }

# step NAME SECONDS COMMAND...: run COMMAND bounded to SECONDS, log to $out/NAME.log, add a table row
feed_steps=" data-256 roofline-64 roofline-256 "
step() {
    local name=$1 limit=$2; shift 2
    local start rc status
    if [[ -n ${GPU_CHECK_STEPS:-} ]]; then
        [[ " $GPU_CHECK_STEPS " == *" $name "* ]] || return 0
    elif [[ $feed_steps == *" $name "* ]]; then
        return 0
    fi
    start=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status="TIMEOUT (${limit} s)" ;; *) status="FAILED ($rc)" ;; esac
    printf '%-16s %-18s %6d s\n' "$name" "$status" $(( ($(date +%s%N) - start) / 1000000000 )) | tee -a "$summary"
    [[ $status == ok ]] || tail -5 "$out/$name.log" | tee -a "$summary"
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
config_with sweeps/smoke.yaml "$work/smoke-1.yaml" resources.gpus_per_run=1 data.path="$work/smoke-data"

# the datasets the benchmarks read, rendered before their time bounds start
step data 45 "$py" -c "
import os
from raytaskaff.config import load_config
from raytaskaff.data.synth import SynthConfig, generate
from raytaskaff.pipeline import prepare_data
prepare_data(load_config('sweeps/default.yaml'))
if not os.path.exists('data/synthetic-32/manifest.json'):
    generate('data/synthetic-32', SynthConfig(n=5000, size=32, seed=0), workers=min(8, os.cpu_count() or 1))
"
step pytest-gpu 110 "$py" -m pytest -m gpu -q -p no:cacheprovider
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
for name in loop-16 seed-16 default-auto packing training kinds roofline-64 roofline-256; do
    [[ -f $out/$name.log ]] && sed -n '/^measure/,$p' "$out/$name.log" | tee -a "$summary"
done
rm -rf "$work"
