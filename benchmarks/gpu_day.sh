#!/usr/bin/env bash
# GPU day: everything semshare can measure on a machine with an NVIDIA GPU, nvcc and a CUDA build of PyTorch but
# no TensorRT, in one run of well under 8 minutes, every table and the card's name written into one folder.
#
#   benchmarks/gpu_day.sh OUT_DIR
#
# Steps (each writes OUT_DIR/<step>.txt; gpu_day.log has the whole run, SUMMARY.md the tables):
#   CPU  environment      versions, git revision, nvcc, driver (environment.txt)
#   CPU  prerequisites    python can import torch, numpy, typer, rich, PIL and semshare (PYTHONPATH = repository);
#                         wheels in $GPU_DAY_WHEELS (default: benchmarks/wheels/) are installed first, offline
#   CPU  build            the CUDA kernels as a plain library (benchmarks/plugins_gpu.py --mode build), for the GPU's
#                         architecture (sm_80 when there is none; $GPU_DAY_ARCH overrides)
#   ---- first GPU step: without a CUDA device the run stops here with one line "gpu_day: STOP ..." (exit 3)
#   GPU  card             torch's device name and capability, nvidia-smi -q when present (card.txt)
#   GPU  correctness      kernels vs semshare.ops on CUDA: fp32, fp16, odd sizes, batch > 1, batch 70000
#   GPU  memcheck         compute-sanitizer --tool memcheck on every kernel path (skipped when not installed)
#   GPU  racecheck        compute-sanitizer --tool racecheck, likewise
#   GPU  kernels_timing   correlation at the tightly levels and the fov60 -> fov120 warp against PyTorch CUDA:
#                         median ms, speed-up (goal >= 3x), GB/s and % of the card's DRAM bandwidth
#   GPU  bench_<variant>  `semshare bench -b torch:cuda,torch:cuda:fp16` for the three variants (table + CSV)
#
# Exit status: 0 all ran and passed; 1 a check failed (correctness, sanitizer, a step's error); 2 bad usage or a
# missing prerequisite (named on one line); 3 stopped before the first GPU step because no GPU is visible.
# Environment: PYTHON (default python3), GPU_DAY_ARCH, GPU_DAY_WHEELS, GPU_DAY_ITERS (kernel timing, 200),
# GPU_DAY_BENCH_ITERS (semshare bench, 30), GPU_DAY_BUDGET (seconds for the whole run, 470; every step has its
# own limit as well, cut to what is left, and a step past the budget is recorded as failed).
set -uo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
    echo "usage: benchmarks/gpu_day.sh OUT_DIR   (writes every table and the card's name into OUT_DIR)" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)" || { echo "gpu_day: cannot create $1" >&2; exit 2; }
PY="${PYTHON:-python3}"
WHEELS="${GPU_DAY_WHEELS:-$ROOT/benchmarks/wheels}"
ITERS="${GPU_DAY_ITERS:-200}"
BENCH_ITERS="${GPU_DAY_BENCH_ITERS:-30}"
BUDGET="${GPU_DAY_BUDGET:-470}"
VARIANTS=(mobilenetv3 mobilenetv3_loosely mobilenetv3_tightly)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
: >"$OUT/gpu_day.log"
FAILED=()
START=$SECONDS

log() { echo "[gpu_day $((SECONDS - START))s] $*" | tee -a "$OUT/gpu_day.log"; }
die() { echo "gpu_day: $1" | tee -a "$OUT/gpu_day.log"; exit "${2:-2}"; }

# run STEP TIMEOUT_S CMD...: CMD's output to OUT/STEP.txt and the log; a failure is recorded, the run goes on.
# The limit is cut to what is left of the run's budget (GPU_DAY_BUDGET seconds, default 470: under 8 minutes).
run() {
    local step="$1" limit="$2"
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [[ $left -lt 15 ]]; then
        echo "skipped: the ${BUDGET}s budget is spent" >"$OUT/$step.txt"
        FAILED+=("$step (skipped: budget spent)")
        log "$step: skipped, the ${BUDGET}s budget is spent"
        return 1
    fi
    [[ $limit -gt $left ]] && limit=$left
    log "$step (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$OUT/$step.txt" 2>&1
    local status=$?
    cat "$OUT/$step.txt" >>"$OUT/gpu_day.log"
    if [[ $status -eq 124 ]]; then
        FAILED+=("$step (timed out after ${limit}s)")
    elif [[ $status -ne 0 ]]; then
        FAILED+=("$step (exit $status)")
    fi
    log "$step: exit $status"
    return $status
}

# ---- CPU: environment ---------------------------------------------------------------------------------------------
command -v "$PY" >/dev/null || die "python not found ($PY); set PYTHON to the interpreter that has torch"
NVCC="$(command -v nvcc || true)"
[[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "host: $(uname -srm)"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a)"
    echo "python: $("$PY" --version 2>&1)"
    echo "nvcc: ${NVCC:-not found} $([[ -n "$NVCC" ]] && "$NVCC" --version | tail -1)"
    echo "driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 || true)"
} >"$OUT/environment.txt"
cat "$OUT/environment.txt" >>"$OUT/gpu_day.log"
log "environment: $OUT/environment.txt"

# ---- CPU: prerequisites -------------------------------------------------------------------------------------------
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    log "prerequisites: installing the wheels in $WHEELS (offline)"
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$WHEELS"/*.whl >>"$OUT/gpu_day.log" 2>&1 \
        || die "pip could not install the wheels in $WHEELS (see $OUT/gpu_day.log)"
fi
MISSING="$("$PY" -c 'import importlib.util
print(" ".join(m for m in ("torch", "numpy", "typer", "rich", "PIL") if importlib.util.find_spec(m) is None))')"
[[ -z "$MISSING" ]] || die "python packages missing for $PY: $MISSING; pip install them, or put their wheels in $WHEELS"
"$PY" -c "import semshare.cli, semshare.ops" 2>>"$OUT/gpu_day.log" \
    || die "semshare does not import from $ROOT (see $OUT/gpu_day.log); a dependency is missing"
[[ -n "$NVCC" ]] || die "nvcc not found: install the CUDA toolkit (or put nvcc on PATH)"
# torch version, its CUDA, whether it sees a GPU, and that GPU's architecture (sm_80 to build for when none)
read -r TORCH_VERSION TORCH_CUDA HAVE_GPU DEVICE_ARCH < <("$PY" -c 'import torch
gpu = torch.cuda.is_available()
major, minor = torch.cuda.get_device_capability() if gpu else (8, 0)
print(torch.__version__, torch.version.cuda, int(gpu), f"sm_{major}{minor}")')
[[ -n "${DEVICE_ARCH:-}" ]] || die "torch does not import for $PY (see the message above)"
TORCH="$TORCH_VERSION (CUDA build $TORCH_CUDA)"
echo "torch: $TORCH" >>"$OUT/environment.txt"
log "prerequisites: torch $TORCH"

# ---- CPU: build the kernels ---------------------------------------------------------------------------------------
ARCH="${GPU_DAY_ARCH:-$DEVICE_ARCH}"
export PATH="$(dirname "$NVCC"):$PATH"  # plugins_gpu.py finds nvcc on PATH
run build 150 "$PY" "$ROOT/benchmarks/plugins_gpu.py" --mode build --arch "$ARCH" --build-dir "$OUT/build" \
    || die "the CUDA kernel library did not build (see $OUT/build.txt)" 1

# ---- first GPU step -------------------------------------------------------------------------------------------------
if [[ "$HAVE_GPU" != 1 ]]; then
    die "STOP before the first GPU step (kernels vs PyTorch on CUDA): torch $TORCH sees no CUDA device; the CPU steps passed (library: $OUT/build/libsemshare_kernels_cuda.so). Run this on a machine with an NVIDIA GPU and its driver." 3
fi
GPU=(--arch "$ARCH" --build-dir "$OUT/build")

{
    "$PY" -c 'import torch
p = torch.cuda.get_device_properties(0)
print(f"card: {p.name}")
print(f"compute capability: {p.major}.{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB")'
    echo "architecture built: $ARCH"
    command -v nvidia-smi >/dev/null && nvidia-smi -q
} >"$OUT/card.txt" 2>&1
CARD="$(head -1 "$OUT/card.txt")"
log "$CARD"

run correctness 90 "$PY" "$ROOT/benchmarks/plugins_gpu.py" --mode correctness "${GPU[@]}"

SANITIZER="$(command -v compute-sanitizer || true)"
[[ -z "$SANITIZER" && -x "$(dirname "$NVCC")/compute-sanitizer" ]] && SANITIZER="$(dirname "$NVCC")/compute-sanitizer"
if [[ -n "$SANITIZER" ]]; then
    # Only our kernels are instrumented (PyTorch's, which fill the inputs, run as usual), and every tensor is its
    # own cudaMalloc (PYTORCH_NO_CUDA_MEMORY_CACHING), so that a read past a tensor is caught, not hidden inside
    # one of the caching allocator's blocks.
    FILTER=()
    if "$SANITIZER" --help 2>&1 | grep -q -- "--kernel-name"; then FILTER=(--kernel-name kns=semshare)
    elif "$SANITIZER" --help 2>&1 | grep -q -- "--kernel-regex"; then FILTER=(--kernel-regex kns=semshare); fi
    for tool in memcheck racecheck; do
        run "$tool" 90 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$SANITIZER" --tool "$tool" --error-exitcode 9 "${FILTER[@]}" \
            "$PY" "$ROOT/benchmarks/plugins_gpu.py" --mode sanitize "${GPU[@]}"
    done
else
    log "memcheck, racecheck: skipped (compute-sanitizer not found beside nvcc or on PATH)"
    echo "skipped: compute-sanitizer not installed" | tee "$OUT/memcheck.txt" >"$OUT/racecheck.txt"
fi

run kernels_timing 120 "$PY" "$ROOT/benchmarks/plugins_gpu.py" --iters "$ITERS" "${GPU[@]}"

for variant in "${VARIANTS[@]}"; do
    run "bench_$variant" 90 "$PY" -m semshare bench -b torch:cuda,torch:cuda:fp16 --variant "$variant" \
        --warmup 5 --iterations "$BENCH_ITERS" --csv "$OUT/bench_$variant.csv"
done

# ---- summary --------------------------------------------------------------------------------------------------------
{
    echo "# GPU day: $CARD"
    echo
    echo '```'
    cat "$OUT/environment.txt"
    echo '```'
    for step in correctness memcheck racecheck kernels_timing "${VARIANTS[@]/#/bench_}"; do
        echo
        echo "## $step"
        echo
        echo '```'
        tail -n 60 "$OUT/$step.txt" 2>/dev/null
        echo '```'
    done
    echo
    echo "total: $((SECONDS - START)) s; failed steps: ${FAILED[*]:-none}"
} >"$OUT/SUMMARY.md"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    log "done in $((SECONDS - START)) s; FAILED: ${FAILED[*]} (tables in $OUT)"
    exit 1
fi
log "done in $((SECONDS - START)) s; all steps passed (tables in $OUT, summary $OUT/SUMMARY.md)"
