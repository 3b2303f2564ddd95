#!/usr/bin/env bash
# The whole GPU reproduction as one command, from the repository root of a bare GPU machine:
#
#     benchmarks/gpu_run.sh            # on one GPU, within DEADLINE seconds (default 510)
#     benchmarks/gpu_run.sh --smoke    # the same steps on a CPU: reproduce --smoke, tiny benchmarks
#                                      # (DEADLINE 3600; the gpu profile: 24 minutes on one core)
#
# Give the command at least DEADLINE + 30 seconds (the device tool's timeout_s: 560 or more).
# `python -m casn_lite budget --profile gpu` prints what each step should take (7.4 minutes).
#
# The machine has python3 with torch, torchvision, numpy, matplotlib, pytest and tqdm; the rest
# comes as wheels in .whl/ (git-ignored; carry it with the checkout), downloaded on a machine
# with a network by `make gpu-wheels`, i.e.
#
#     pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#         papermill jupytext nbval ipykernel ipywidgets pyyaml -d .whl
#
# (their pure-Python dependencies and the cp312 manylinux wheels of pyzmq, tornado, psutil,
# pyyaml, rpds-py come with them; about 20 MB). casn_lite is not installed: PYTHONPATH holds
# the checkout.
#
# Steps, each under `timeout` with what is left of DEADLINE; a failed step is recorded and the
# rest still run:
#   1. set-up: the wheels unpacked into $WORK/site (pip --no-index --no-deps --target), a
#      python3 Jupyter kernel registered in $WORK/jupyter (nothing written to the home folder)
#   2. budget: the seconds each step should take
#   3. benchmarks/evaluation.py (Market-sized ranking, CPU and GPU)
#   4. benchmarks/train_throughput.py --device cuda (IDE and CASN steps, fp32 and bf16)
#   5. reproduce --profile $PROFILE: notebook 00 draws the data, then 01-05
#   6. reproduce --profile $PROFILE --arch pcb: 04 and 05 with PCB
# Then $OUT (at most 6 files): gpu_run.log (everything printed), steps.tsv (each step's exit
# status and seconds), benchmarks.txt, metrics.tar.gz (each notebook's .metrics.json and the
# runs' budgets), notebooks.tar.gz (the executed notebooks), results.tar.gz (results/).
# Exit status: 0 when every step succeeded, 1 when one failed or ran out of time, 2 when the
# run could not start (no wheels, no GPU).
#
# Settings (environment): PROFILE (gpu), PYTHON (python3), DEADLINE (seconds), WHEELS
# (.whl), WORK (/tmp/casn-gpu-run), RUNS (runs), OUT (runs/gpu_run-out where the caller sets none),
# ONLY (notebook numbers, e.g. 00,04: those of the IDE half, and of them 04 and 05 with PCB;
# default all). With --smoke, a missing wheel folder is fine: the environment's packages are used.

set -uo pipefail

SMOKE=0
[[ "${1:-}" == "--smoke" ]] && SMOKE=1
PROFILE=${PROFILE:-gpu}
PYTHON=${PYTHON:-python3}
DEADLINE=${DEADLINE:-$( ((SMOKE)) && echo 3600 || echo 510)}  # a CPU smoke run of the gpu profile takes minutes
WHEELS=${WHEELS:-.whl}
WORK=${WORK:-/tmp/casn-gpu-run}
RUNS=${RUNS:-runs}
OUT=${OUT:-runs/gpu_run-out}
ONLY=${ONLY:-}
RESERVE=20  # seconds kept for writing $OUT

if [[ ! -f casn_lite/__init__.py ]]; then
    echo "error: run benchmarks/gpu_run.sh from the repository root" >&2
    exit 2
fi
if [[ $SMOKE == 0 ]] && ! compgen -G "$WHEELS/*.whl" > /dev/null; then
    echo "error: no wheels in $WHEELS/: run \`make gpu-wheels\` on a machine with a network and carry $WHEELS/ along" >&2
    exit 2
fi

mkdir -p "$WORK" "$OUT" "$RUNS"
OUT=$(cd "$OUT" && pwd)
RUNS=$(cd "$RUNS" && pwd)
LOG="$OUT/gpu_run.log"
STEPS="$OUT/steps.tsv"
BENCH="$OUT/benchmarks.txt"
: > "$LOG"
: > "$BENCH"
printf 'step\tstatus\tseconds\n' > "$STEPS"
FAILED=0
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export JUPYTER_DATA_DIR="$WORK/jupyter"
export PYTHONUNBUFFERED=1

# step NAME COMMAND...: run COMMAND under timeout with what is left of DEADLINE, its output
# into the log (and, with BENCH_STEP=1, into benchmarks.txt); record its status and seconds.
step() {
    local name=$1 status
    shift
    local start=$SECONDS left=$((DEADLINE - SECONDS - RESERVE))
    echo "=== $name ($left s left) ===" | tee -a "$LOG"
    if ((left < 5)); then
        echo "$name: skipped, no time left" | tee -a "$LOG"
        status=skipped
    else
        timeout --signal=INT --kill-after=10 "$left" "$@" 2>&1 \
            | tee -a "$LOG" ${BENCH_STEP:+"$BENCH"}
        status=${PIPESTATUS[0]}
        ((status == 124)) && echo "$name: stopped after $left s (DEADLINE $DEADLINE s)" | tee -a "$LOG"
    fi
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >> "$STEPS"
    [[ $status == 0 ]] || FAILED=1
}

unpack() {  # the wheels into $WORK/site
    rm -rf "$WORK/site"
    if "$PYTHON" -m pip --version > /dev/null 2>&1; then
        "$PYTHON" -m pip install --quiet --no-index --no-deps --target "$WORK/site" "$WHEELS"/*.whl
    else  # no pip: a wheel is a zip file laid out for site-packages
        for wheel in "$WHEELS"/*.whl; do "$PYTHON" -m zipfile -e "$wheel" "$WORK/site" || return 1; done
    fi
}

setup() {  # run by `bash -c` under timeout: exported with what it reads
    if ! compgen -G "$WHEELS/*.whl" > /dev/null; then
        echo "note: no wheels in $WHEELS/ (smoke run): using the environment's packages"
    elif unpack; then
        echo "unpacked $(ls "$WHEELS"/*.whl | wc -l) wheels into $WORK/site"
    elif ((SMOKE)); then  # wheels for the GPU machine's Python, not this one
        rm -rf "$WORK/site"
        echo "note: the wheels in $WHEELS/ do not install here (smoke run): using the environment's packages"
    else
        return 1
    fi
    "$PYTHON" -c "import papermill, jupytext, nbval, ipykernel, yaml" || return 1
    "$PYTHON" -m ipykernel install --user --name python3 --display-name "Python 3 (gpu_run)" || return 1
    if [[ $SMOKE == 0 ]]; then
        "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name())" \
            || return 1
    fi
}

export -f unpack setup
export SMOKE WHEELS WORK PYTHON

echo "gpu_run: profile $PROFILE, smoke $SMOKE, deadline $DEADLINE s, $(date -u +%FT%TZ)" | tee -a "$LOG"
step setup bash -c setup
if [[ $SMOKE == 0 ]] && [[ $(tail -n 1 "$STEPS" | cut -f 2) != 0 ]]; then
    echo "error: set-up failed (see $LOG); nothing else can run" >&2
    exit 2
fi
step budget "$PYTHON" -m casn_lite budget --profile "$PROFILE"
if [[ $SMOKE == 1 ]]; then
    BENCH_STEP=1 step evaluation-benchmark "$PYTHON" benchmarks/evaluation.py --queries 300 --gallery 1500 --repeats 1
    BENCH_STEP=1 step throughput-benchmark "$PYTHON" benchmarks/train_throughput.py --device cpu --steps 2
    SMOKE_FLAG=(--smoke)
else
    BENCH_STEP=1 step evaluation-benchmark "$PYTHON" benchmarks/evaluation.py
    BENCH_STEP=1 step throughput-benchmark "$PYTHON" benchmarks/train_throughput.py --device cuda --steps 20
    SMOKE_FLAG=()
fi
ONLY_IDE=() ONLY_PCB=()
if [[ -n $ONLY ]]; then
    ONLY_IDE=(--only "$ONLY")
    pcb=$(tr ',' '\n' <<< "$ONLY" | grep -E '^0[45]$' | paste -sd,)
    ONLY_PCB=(--only "${pcb:-none}")  # none: refused by the runner, a failed step
fi
step reproduce "$PYTHON" -m casn_lite reproduce --profile "$PROFILE" --kernel python3 "${SMOKE_FLAG[@]}" \
    "${ONLY_IDE[@]}" --out "$RUNS/gpu_run-$PROFILE"
step reproduce-pcb "$PYTHON" -m casn_lite reproduce --profile "$PROFILE" --arch pcb --kernel python3 \
    "${SMOKE_FLAG[@]}" "${ONLY_PCB[@]}" --out "$RUNS/gpu_run-$PROFILE-pcb"

# $OUT: the runs' records, the executed notebooks and results/, each bundle at most 16 MiB
bundle() {  # bundle NAME FOLDER FILE...: FILEs relative to FOLDER, into $OUT/NAME
    local name=$1 folder=$2
    shift 2
    if (($# == 0)); then
        echo "$name: nothing to bundle" | tee -a "$LOG"
        return
    fi
    tar -czf "$OUT/$name" -C "$folder" "$@"
    if (($(stat -c %s "$OUT/$name") > 16 * 1024 * 1024)); then
        echo "$name: over 16 MiB, left out" | tee -a "$LOG"
        rm -f "$OUT/$name"
        FAILED=1
    fi
}
shopt -s nullglob
cd "$RUNS" || exit 1
records=() notebooks=()
for f in gpu_run-"$PROFILE"{,-pcb}/{*.metrics.json,gpu-estimate.json,smoke-steps.jsonl}; do
    [[ -e $f ]] && records+=("$f")
done
notebooks=(gpu_run-"$PROFILE"{,-pcb}/*.ipynb)
cd - > /dev/null || exit 1
bundle metrics.tar.gz "$RUNS" "${records[@]}"
bundle notebooks.tar.gz "$RUNS" "${notebooks[@]}"
[[ $SMOKE == 0 && -d results ]] && bundle results.tar.gz . results
echo "gpu_run: $( ((FAILED)) && echo 'a step failed' || echo 'every step succeeded') in $SECONDS s; $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
(column -t "$STEPS" 2> /dev/null || cat "$STEPS") | tee -a "$LOG"
exit "$FAILED"
