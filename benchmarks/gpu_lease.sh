#!/usr/bin/env bash
# Everything neuromap measures and trains on a lent GPU machine, in one command, ordered so that a
# lease cut short still returns what was done (each phase writes into $OUT as it ends).
#
#   bash benchmarks/gpu_lease.sh            # on the GPU machine, from the repository root
#   SMALL=1 bash benchmarks/gpu_lease.sh    # the same phases at toy sizes (a CPU check of the script)
#   MODELS="B C" STEPS=5000 BENCH=0 bash benchmarks/gpu_lease.sh   # only train (and calibrate) these
#   TRAIN=0 BF16=0 bash benchmarks/gpu_lease.sh                      # only the end-to-end benchmarks
#   (SE_OVERRIDE / PE_OVERRIDE set the number of single-end reads / pairs; PROCESSES=0 leaves out the rows of `neuromap align --processes`;
#    ROWS="pe" runs only those of phase 4's benchmarks: any of model se pe scaling profile startup workers timeline ab ab-scale dp server batch spy pe-scale latency pe-why python-start independence;
#    AB_VARIANTS, AB_ROUNDS: the variants (and rounds) of the ab and ab-scale rows; AB_INPUTS: the inputs of ab-scale (se pe pe20);
#    BATCH_SIZES="4000 16000 32000" sets the -K values of the batch row;
#    SCALING="400000 2000000 4000000" sets the input sizes of the scaling row)
#
# Needs jax (with its CUDA plugin), flax, optax, numpy, click, tqdm and a C compiler where it runs
# (phase 1 builds neuromap/_kernels.c in place, or takes .bin/neuromap_kernels.so); pysam is
# installed from .whl/ and minimap2 / bwa are taken from .bin/ when those folders are there (the GPU
# machine reaches no package registry). Phases:
#   1. check: versions, the GPU JAX sees, `neuromap align` on test-data with the network;
#   2. train candidate models ($MODELS, recipes below) side by side on the GPU (the step count is
#      $STEPS, or set from a timed probe so they fit TRAIN_SECONDS), while the benchmark reads are
#      simulated on the CPU;
#   3. calibrate each model on its held-out genome (neuromap calibrate), and ask of each whether its
#      likelihood says more than the alignment score (benchmarks/mapq_features.py);
#   4. benchmarks on the otherwise idle machine: the network alone (float32 vs bfloat16),
#      single-end and paired-end end to end beside minimap2 (and bwa mem) at -t $THREADS, with
#      threads and with worker processes, throughput and memory as the input grows 5 x (worker
#      processes), and the share of time per pipeline stage with the network on.
set -uo pipefail
OUT=${OUT:-/tmp/neuromap-gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
SMALL=${SMALL:-0}
PY=${PYTHON:-python3}
[[ "$PY" == */* && "$PY" != /* ]] && PY="$PWD/$PY"  # the same interpreter from another folder (the A/B row)
THREADS=${THREADS:-16}
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
if [ "$SMALL" = 1 ]; then BATCH=8; SE_READS=4000; PE_PAIRS=2000; SIZE=500000; PROFILE_READS=2000; MODEL_READS=64; MODEL_BUCKETS=64; CAL_READS=500; CAL_SIZE=200000
else BATCH=128; SE_READS=400000; PE_PAIRS=100000; SIZE=5000000; PROFILE_READS=20000; MODEL_READS=2048; MODEL_BUCKETS="1024 4096"; CAL_READS=20000; CAL_SIZE=1000000; fi
SE_READS=${SE_OVERRIDE:-$SE_READS}; PE_PAIRS=${PE_OVERRIDE:-$PE_PAIRS}  # other input sizes
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -d .bin ] && export PATH="$PWD/.bin:$PATH"
WORK=${WORK:-/tmp/neuromap-gpu-work}
ROWS=" ${ROWS:-model se pe scaling profile startup workers} "
wants() { [[ "$ROWS" == *" $1 "* ]]; }
rm -rf "$WORK"; mkdir -p "$WORK"
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

stamp "phase 1: check"
if [ -d .whl ] && ! "$PY" -c "import pysam" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/pysam-*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
# flatbuffers serialises the exported network (model.ExportedScorer) for later runs.
if [ -d .whl ] && ! "$PY" -c "import flatbuffers" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-fb .whl/flatbuffers-*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/site-fb"
fi
# isal (ISA-L's gzip) decompresses gzipped reads; without it neuromap falls back to zlib.
if [ -d .whl ] && ! "$PY" -c "import isal" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-isal .whl/isal-*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/site-isal"
fi
# py-spy samples the processes of a run (row spy).
if [ -d .whl ] && ! command -v py-spy > /dev/null && ls .whl/py_spy-*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-spy .whl/py_spy-*.whl &&
        export PATH="$PATH:/tmp/site-spy/bin"
fi
# neuromap is written against Flax 0.12 (nnx.List); an older Flax gets the carried one.
if [ -d .whl ] && ! "$PY" -c "from flax import nnx; nnx.List" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-flax .whl/flax-*.whl &&
        export PYTHONPATH="/tmp/site-flax:$PYTHONPATH"
fi
# The kernels for this machine's Python: the extension if setuptools can build it, else the same C
# file as a plain library (no Python headers needed), else one carried in .bin/ (built on the
# workstation: gcc -O3 -std=gnu11 -fno-math-errno -shared -fPIC -DNEUROMAP_NO_PYTHON neuromap/_kernels.c -o .bin/neuromap_kernels.so).
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('neuromap._kernels') is None)"; then
    EXT=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
    "$PY" setup.py -q build_ext --inplace ||
        gcc -O3 -std=gnu11 -fno-math-errno -shared -fPIC -DNEUROMAP_NO_PYTHON neuromap/_kernels.c -o "neuromap/_kernels$EXT" ||
        cp .bin/neuromap_kernels.so "neuromap/_kernels$EXT" || { echo "phase 1 failed: no kernels for this Python"; exit 1; }
fi
# Byte-compiled modules, as an installed copy has them: with PYTHONDONTWRITEBYTECODE set (as on the
# workstation these scripts were written on) every process of every run would compile them again (about 80 ms of a
# run's start on 2 cores).
"$PY" -m compileall -q neuromap benchmarks > /dev/null
"$PY" - <<'EOF' || { echo "phase 1 failed: the environment cannot run neuromap"; exit 1; }
import jax, flax, optax, numpy, pysam, platform
print("python", platform.python_version(), "jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "numpy", numpy.__version__, "pysam", pysam.__version__)
print("devices", jax.devices())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
minimap2 --version; bwa 2>&1 | grep Version || true
cp test-data/ref.fa "$WORK/"
"$PY" -m neuromap align --stats "$WORK/stats.json" -t 4 "$WORK/ref.fa" test-data/reads.fq > "$WORK/check.sam" || { echo "phase 1 failed: align"; exit 1; }
cat "$WORK/stats.json"; echo

stamp "phase 2: train (a timed probe unless STEPS is given, then the models) while the benchmark reads are simulated"
if [ "${TRAIN:-1}" = 0 ]; then MODELS=""; STEPS=0; fi
[ -n "${STEPS:-}" ] || STEP_SECONDS=$("$PY" - <<'EOF'
import time
import numpy as np
from flax import nnx
import optax
from neuromap.operators.mapping import NeuralReadMapper, NeuralReadMapperConfig
from neuromap.train import train_step
from neuromap.training_data import TrainConfig, batch_for_step
cfg = TrainConfig(batch_size=128, windows_per_read=6, min_read_length=100)
model = NeuralReadMapper(NeuralReadMapperConfig(read_length=320, reference_window=400, embedding_dim=32, num_layers=1, dropout_rate=0.0, kmer_kernel=9))
optimizer = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
model.train()
batch = batch_for_step(cfg, 0)
for _ in range(3):
    loss, _ = train_step(model, optimizer, *batch)
float(loss)
t0 = time.perf_counter()
for _ in range(20):
    loss, _ = train_step(model, optimizer, *batch)
float(loss)
print(f"{(time.perf_counter() - t0) / 20:.5f}")
EOF
)
STEP_SECONDS=${STEP_SECONDS:-}
echo "one training step (128 reads x 6 windows): ${STEP_SECONDS:-not probed} s"
MODELS=${MODELS-J K H}
N_MODELS=$(echo $MODELS | wc -w)
if [ -z "${STEPS:-}" ]; then
    STEPS=$("$PY" -c "
import sys
t = float(sys.argv[1]) if sys.argv[1] else 1.0
steps = int(float(sys.argv[2]) / (int(sys.argv[4]) * t * 1.3)) // 250 * 250
print(max(500, min(20000, steps)) if sys.argv[3] != '1' else 20)" "${STEP_SECONDS:-}" "$TRAIN_SECONDS" "$SMALL" "$N_MODELS")
fi
echo "steps per model: $STEPS"
VALIDATE=$(( STEPS >= 1000 ? STEPS / 8 : STEPS ))
COMMON=(--steps "$STEPS" --batch-size "$BATCH" --seed 0 --validate-every "$VALIDATE" --workers "${WORKERS:-4}" --quiet)
recipe() {
    case $1 in
        # the shipped model's recipe with more reads (4 windows, reads of 50-150 bp, paralogs 1-4 %)
        A) echo "" ;;
        # more and nearer paralogs (6 windows: 3 paralogs 0.3-2 %, as the genomes' near repeats), reads of 100-150 bp
        B) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100" ;;
        # B with one attention head (half the network's CPU time)
        C) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --num-heads 1" ;;
        # five paralogs of 0.2-1.5 % (8 windows)
        E) echo "--windows-per-read 8 --near-paralog 0.002 0.015 --min-read-length 100" ;;
        # The recipes below aim at what benchmarks/mapq_features.py found: the shipped model (C) tells
        # copies one or two mismatches apart less sharply than the alignment score does.
        # C with Illumina-like reads (errors 0-2 %, SNPs 0-0.2 %): a mismatch is stronger evidence
        F) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --num-heads 1 --max-error-rate 0.02 --max-snp-rate 0.002" ;;
        # F, twice as wide
        G) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --num-heads 1 --max-error-rate 0.02 --max-snp-rate 0.002 --embedding-dim 64" ;;
        # J with two cross-attention blocks each way
        H) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --num-heads 1 --max-error-rate 0.02 --max-snp-rate 0.002 --base-identity --position-smoothing 0.02 --num-layers 2" ;;
        # F with a learned base-identity term in the scoring logits (on 2 CPU cores, 2800 x 64 reads: no better than C)
        I) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --num-heads 1 --max-error-rate 0.02 --max-snp-rate 0.002 --base-identity" ;;
        # I with the start-position target nearly all on the true start (0.2 spread on the
        # neighbours asks for scores that are smooth under a 1-bp shift, which fights a sharp
        # per-base identity term)
        J) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --num-heads 1 --max-error-rate 0.02 --max-snp-rate 0.002 --base-identity --position-smoothing 0.02" ;;
        # J as a fine-tune of the shipped model (what 2 CPU cores could do: CARD.md)
        K) echo "--windows-per-read 6 --near-paralog 0.003 0.02 --min-read-length 100 --max-error-rate 0.02 --max-snp-rate 0.002 --base-identity --position-smoothing 0.02 --init-from shipped --lr 5e-4 $GENOMES" ;;
    esac
}
# Real genomes for the fine-tune (K), when benchmarks/debian_genomes.sh has fetched them here (the GPU
# machine reaches no package registry: carry benchmarks/work/genomes).
GENOMES=""
for g in benchmarks/work/genomes/*.fa; do [ -f "$g" ] && GENOMES="$GENOMES --genome $g"; done
[ -n "$GENOMES" ] && GENOMES="$GENOMES --genome-fraction 0.5"
TRAININGS=()
for m in $MODELS; do
    "$PY" -m neuromap train -o "$WORK/model-$m" "${COMMON[@]}" $(recipe $m) > "$WORK/train-$m.log" 2>&1 &
    TRAININGS+=($!)
done
PREPARATIONS=()
if [ "${BENCH:-1}" = 1 ]; then
    if [ -n "$MODELS" ] || wants se || wants scaling || wants profile || wants startup || wants workers || wants timeline || wants ab || wants dp || wants server || wants batch || wants spy || wants pe-why || { wants ab-scale && [[ "${AB_INPUTS:-se pe}" == *se* ]]; } || wants python-start; then
        "$PY" benchmarks/bench_se.py --prepare-only --size "$SIZE" --reads "$SE_READS" --workdir "$WORK/se" &
        PREPARATIONS+=($!)
    fi
    if wants pe || wants ab || wants server || wants pe-scale || wants pe-why || wants ab-scale; then
        "$PY" benchmarks/bench_pe.py --prepare-only --size "$SIZE" --pairs "$PE_PAIRS" --workdir "$WORK/pe" &
        PREPARATIONS+=($!)
    fi
fi
[ ${#TRAININGS[@]} -gt 0 ] && wait "${TRAININGS[@]}"
for m in $MODELS; do echo "-- model $m: neuromap train ${COMMON[*]} $(recipe $m)"; cat "$WORK/train-$m.log"; done
[ ${#PREPARATIONS[@]} -gt 0 ] && wait "${PREPARATIONS[@]}"

stamp "phase 3: calibrate"
CALIBRATIONS=()
for m in $MODELS; do
    if [ -f "$WORK/model-$m/params.npz" ]; then
        timeout 300 "$PY" -m neuromap calibrate "$WORK/model-$m" --reads "$CAL_READS" --genome-size "$CAL_SIZE" > "$WORK/calibrate-$m.json" 2>&1 &
        CALIBRATIONS+=($!)
    fi
done
# Named: a bare `wait` would also wait for the `tee` of the log.
[ ${#CALIBRATIONS[@]} -gt 0 ] && wait "${CALIBRATIONS[@]}"
for m in $MODELS; do echo "-- model $m"; cat "$WORK/calibrate-$m.json"; done
# Does each model's likelihood say more than the alignment score (held-out fit; Brier on the SE reads)?
if [ "${BENCH:-1}" = 1 ]; then
    for m in $MODELS; do
        [ -f "$WORK/model-$m/calibration.json" ] &&
            timeout 300 "$PY" benchmarks/mapq_features.py --weights "$WORK/model-$m" --workdir "$WORK/se" > "$WORK/mapq-features-$m.md" 2>&1
        echo "-- model $m"; cat "$WORK/mapq-features-$m.md"
    done
fi
[ -n "$MODELS" ] && (cd "$WORK" && tar -czf "$OUT/models.tar.gz" --exclude checkpoint.msgpack model-* train-*.log calibrate-*.json $(ls mapq-features-*.md 2>/dev/null))
[ "${BENCH:-1}" = 1 ] || { stamp "done (no benchmarks asked for)"; exit 0; }

stamp "phase 4: benchmarks"
[ "${BF16:-1}" = 1 ] && wants model && timeout 120 "$PY" benchmarks/bench_model.py --reads "$MODEL_READS" --buckets $MODEL_BUCKETS > "$OUT/RESULTS-gpu-model.md" && cat "$OUT/RESULTS-gpu-model.md"
EXTRA_ROWS=(); [ "${BF16:-1}" = 1 ] && EXTRA_ROWS=(--bf16)
[ "${PROCESSES:-1}" = 1 ] && EXTRA_ROWS+=(--processes)  # rows with `align --processes` too
# `align --server` (the network kept loaded by `neuromap serve`) against a run alone and minimap2, SE and PE
# (first: the newest row, kept if a lease is cut short).
wants server && timeout 300 "$PY" benchmarks/bench_server.py --workdir "$WORK/se" --pe-workdir "$WORK/pe" --threads "$THREADS" \
    --sizes "$SE_READS" --pairs "$PE_PAIRS" --repeats 2 --processes > "$OUT/RESULTS-gpu-server.md" && cat "$OUT/RESULTS-gpu-server.md"
wants se && timeout 300 "$PY" benchmarks/bench_se.py --reuse-data "${EXTRA_ROWS[@]}" --size "$SIZE" --reads "$SE_READS" --threads "$THREADS" --workdir "$WORK/se" \
    > "$OUT/RESULTS-gpu-se.md" && head -20 "$OUT/RESULTS-gpu-se.md"
wants pe && timeout 300 "$PY" benchmarks/bench_pe.py --reuse-data "${EXTRA_ROWS[@]}" --size "$SIZE" --pairs "$PE_PAIRS" --threads "$THREADS" --workdir "$WORK/pe" \
    > "$OUT/RESULTS-gpu-pe.md" && head -20 "$OUT/RESULTS-gpu-pe.md"
# Throughput as the input grows 5 x (the SE reads repeated, renamed; SCALING lists other sizes), neuromap with worker processes
[ "${PROCESSES:-1}" = 1 ] && wants scaling && timeout 300 "$PY" benchmarks/bench_memory.py --processes --from "$WORK/se/reads.fq" --reads ${SCALING:-$SE_READS $((5 * SE_READS))} \
    --threads "$THREADS" --workdir "$WORK/se" > "$OUT/RESULTS-gpu-scaling.md" && cat "$OUT/RESULTS-gpu-scaling.md"
wants profile && timeout 120 "$PY" benchmarks/profile_align.py "$WORK/se/genome.fa" "$WORK/se/reads.fq" --reads "$PROFILE_READS" --neural \
    > "$OUT/RESULTS-gpu-profile.md" && cat "$OUT/RESULTS-gpu-profile.md"
wants startup && timeout 240 "$PY" benchmarks/startup.py "$WORK/se/genome.fa" "$WORK/se/reads.fq" --threads "$THREADS" \
    > "$OUT/RESULTS-gpu-startup.md" && cat "$OUT/RESULTS-gpu-startup.md"
# What a worker process costs to start, -t 2 against -t $THREADS (the reads: enough batches of 500 for every worker)
# Where a run waits (neuromap/trace.py, benchmarks/timeline.py): the network with --processes over
# the SE reads and 10 x them, traced once and timed twice untraced, beside --no-neural and
# minimap2 (SAM to /dev/null for every tool).
G="$WORK/se/genome.fa"; R="$WORK/se/reads.fq"; BIG="$WORK/se/reads-10x.fq"
make_big() {  # the SE reads 10 times over (renamed), and the index and the compilation cache warm
    [ -s "$BIG" ] && return
    local copies=() i
    for i in 0 1 2 3 4 5 6 7 8 9; do sed "1~4s/^@/@r$i./" "$R" > "$BIG.$i" & copies+=($!); done
    wait "${copies[@]}"; cat "$BIG".[0-9] > "$BIG"; rm -f "$BIG".[0-9]
    "$PY" -m neuromap align --quiet --processes -t "$THREADS" "$G" <(head -n 36000 "$R") > /dev/null
}
TIMEFORMAT=%R
if wants timeline; then
    make_big
    {
        echo "# Timeline rows ($(date -u '+%Y-%m-%d %H:%M UTC'), -t $THREADS, SAM to /dev/null): wall seconds"
        echo
        for input in "$R" "$BIG"; do
            n=$(( $(wc -l < "$input") / 4 ))
            echo "## $n reads"
            echo
            echo "| run | wall s |"; echo "|---|---|"
            for run in 1 2; do echo "| neuromap (network), --processes, run $run | $( { time "$PY" -m neuromap align --quiet --processes -t "$THREADS" "$G" "$input" > /dev/null; } 2>&1 ) |"; done
            echo "| neuromap --no-neural, --processes | $( { time "$PY" -m neuromap align --quiet --no-neural --processes -t "$THREADS" "$G" "$input" > /dev/null; } 2>&1 ) |"
            echo "| minimap2 -x sr | $( { time minimap2 -a -x sr -t "$THREADS" "$G" "$input" > /dev/null 2>/dev/null; } 2>&1 ) |"
            rm -f "$WORK"/tl.*
            NEUROMAP_TRACE="$WORK/tl" "$PY" -m neuromap align --quiet --processes -t "$THREADS" "$G" "$input" > /dev/null
            echo; "$PY" benchmarks/timeline.py "$WORK/tl"; echo
            rm -f "$WORK"/tl.*
            NEUROMAP_TRACE="$WORK/tl" "$PY" -m neuromap align --quiet --no-neural --processes -t "$THREADS" "$G" "$input" > /dev/null
            echo "### --no-neural"; echo; "$PY" benchmarks/timeline.py "$WORK/tl"; echo
        done
    } > "$OUT/RESULTS-gpu-timeline.md" 2>&1
    cat "$OUT/RESULTS-gpu-timeline.md"
fi
# Reads per batch (-K) over 10 x the SE reads, alone, through `neuromap serve` and --no-neural, beside
# minimap2 in turn; then the network alone per call size (float32): is the device's batch the default's?
if wants batch; then
    make_big
    timeout 240 "$PY" benchmarks/bench_batch.py "$G" "$BIG" --threads "$THREADS" --sizes ${BATCH_SIZES:-4000 16000 32000} --server --no-neural \
        --repeats 2 > "$OUT/RESULTS-gpu-batch-size.md"; cat "$OUT/RESULTS-gpu-batch-size.md"
    timeout 90 "$PY" benchmarks/bench_model.py --reads "$MODEL_READS" --buckets 64 256 1024 4096 --dtypes float32 --repeats 10 \
        > "$OUT/RESULTS-gpu-call-size.md"; cat "$OUT/RESULTS-gpu-call-size.md"
fi
# How long a model call's messages take between a worker and the network's process, idle and with
# every core busy (no GPU in it): the communication's share of the 4 ms a call.
wants latency && timeout 120 "$PY" benchmarks/pipe_latency.py > "$OUT/RESULTS-gpu-pipe-latency.md" && cat "$OUT/RESULTS-gpu-pipe-latency.md"
# Where the network's process, a worker and the main process spend a run over 10 x the SE reads
# (py-spy, sampled 2 s from 2.5 s in): the network loaded by the run, the same with native frames,
# and through `neuromap serve`. The seventh lease saw 4 ms a call in the timelines against 1.3 ms
# on the device.
if wants spy; then
    make_big
    if command -v py-spy > /dev/null; then
        for how in "" "--server" "--native --rate 50"; do
            timeout 120 "$PY" benchmarks/spy_processes.py "$G" "$BIG" --threads "$THREADS" --delay 2.5 --seconds 2 $how
            echo
        done > "$OUT/RESULTS-gpu-spy.md" 2>&1
        cat "$OUT/RESULTS-gpu-spy.md"
    else
        echo "row spy: no py-spy (carry its wheel in .whl/)"
    fi
fi
PE10="$WORK/pe10"
make_pe10() {  # the PE pairs 10 times over (renamed), beside the PE genome
    mkdir -p "$PE10"
    [ -s "$PE10/r2.fq" ] && return
    ln -sf "$WORK/pe/genome.fa" "$PE10/genome.fa"
    local copies=() mate i
    for mate in r1 r2; do
        for i in 0 1 2 3 4 5 6 7 8 9; do sed "1~4s/^@/@p$i./" "$WORK/pe/$mate.fq"; done > "$PE10/$mate.fq" &
        copies+=($!)
    done
    wait "${copies[@]}"
    "$PY" -m neuromap index "$PE10/genome.fa" > /dev/null
}
PE20="$WORK/pe20"
make_pe20() {  # the PE pairs 20 times over: as many reads as the SE reads 10 times over
    mkdir -p "$PE20"
    [ -s "$PE20/r2.fq" ] && return
    make_pe10
    ln -sf "$WORK/pe/genome.fa" "$PE20/genome.fa"
    local copies=() mate
    for mate in r1 r2; do { cat "$PE10/$mate.fq"; sed "1~4s/^@p/@q/" "$PE10/$mate.fq"; } > "$PE20/$mate.fq" & copies+=($!); done
    wait "${copies[@]}"
    "$PY" -m neuromap index "$PE20/genome.fa" > /dev/null
}
# Paired-end at scale: the PE pairs 10 times over (renamed), alone and through `neuromap serve`
# beside minimap2 (bench_server.py; accuracy is the pe row's).
if wants pe-scale; then
    make_pe10
    # PE_SCALE_SPARE: NEUROMAP_SPARE_WORKERS of each pass ("default": align's own choice)
    for sp in ${PE_SCALE_SPARE:-default}; do
        suffix=""; [ "$sp" = default ] || suffix="-spare$sp"
        ( [ "$sp" = default ] || export NEUROMAP_SPARE_WORKERS=$sp
          echo "NEUROMAP_SPARE_WORKERS: ${NEUROMAP_SPARE_WORKERS:-unset, align decides}"
          timeout 400 "$PY" benchmarks/bench_server.py --workdir "$PE10" --pe-workdir "$PE10" --threads "$THREADS" --sizes --pairs $((10 * PE_PAIRS)) \
              --repeats 2 --processes ) > "$OUT/RESULTS-gpu-pe-scale$suffix.md"; cat "$OUT/RESULTS-gpu-pe-scale$suffix.md"
    done
fi
# Why the network's process takes 0.3-0.45 s from its start to its first line of neuromap on this
# machine (the sixth to eighth leases' timelines; about 0.1 s for the same import alone on 2
# cores): Python's own start with and without site (.pth files), the imports before JAX and JAX's,
# and a traced run's milestones.
if wants python-start; then
    {
        echo "# Python's start ($(date -u '+%Y-%m-%d %H:%M UTC'), $("$PY" --version 2>&1))"; echo
        echo "| command | wall s |"; echo "|---|---|"
        for how in "|pass" "-S|pass" "-I|pass" "|import neuromap.model_process" "|import jax"; do
            flag=${how%%|*}; code=${how#*|}
            for run in 1 2; do echo "| python $flag -c '$code' (run $run) | $( { time "$PY" $flag -c "$code"; } 2>&1 ) |"; done
        done
        echo; echo "site-packages and their .pth files:"; echo
        "$PY" -c "import glob, os, site; [print(d, sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, '*.pth')))) for d in site.getsitepackages() + [site.getusersitepackages()]]"
        echo; echo "## -X importtime, the 15 slowest (cumulative µs): neuromap.model_process, then jax"; echo
        "$PY" -X importtime -c "import neuromap.model_process" 2>&1 | sort -t'|' -k2 -n | tail -15
        echo
        "$PY" -X importtime -c "import jax" 2>&1 | sort -t'|' -k2 -n | tail -15
        make_big
        rm -f "$WORK"/tl.*
        NEUROMAP_TRACE="$WORK/tl" "$PY" -m neuromap align --quiet --processes -t "$THREADS" "$G" <(head -n 16000 "$R") > /dev/null
        echo; "$PY" benchmarks/timeline.py "$WORK/tl" | awk 'NR <= 26'
    } > "$OUT/RESULTS-gpu-python-start.md" 2>&1
    cat "$OUT/RESULTS-gpu-python-start.md"
fi
# Why a mate costs about 1.4 x a single-end read on this machine (the eighth lease) where on 2 cores
# it costs about 1.15 x: 1M pairs and 4M single-end reads, each timed once beside minimap2, traced
# once (per worker: computing, waiting for the network, idle; timeline.py) and, with py-spy,
# sampled (spy_processes.py). Workers idle in the PE run point at the main process (cutting two
# files, handing out batches); workers computing longer per read point at the mapping itself.
if wants pe-why; then
    make_big; make_pe10
    {
        echo "# A mate against a single-end read ($(date -u '+%Y-%m-%d %H:%M UTC'), -t $THREADS, --processes, SAM to /dev/null)"
        for what in "$(( $(wc -l < "$PE10/r1.fq") / 4 )) pairs|$PE10/genome.fa|$PE10/r1.fq $PE10/r2.fq" "$(( $(wc -l < "$BIG") / 4 )) single-end reads|$G|$BIG"; do
            IFS='|' read -r title genome inputs <<< "$what"
            [ -s "${genome%.fa}.why.mmi" ] || minimap2 -x sr -d "${genome%.fa}.why.mmi" "$genome" 2> /dev/null
            echo; echo "## $title"; echo
            echo "| run | wall s |"; echo "|---|---|"
            echo "| neuromap (network) | $( { time "$PY" -m neuromap align --quiet --processes -t "$THREADS" "$genome" $inputs > /dev/null; } 2>&1 ) |"
            echo "| minimap2 -x sr (index built before) | $( { time minimap2 -a -x sr -t "$THREADS" "${genome%.fa}.why.mmi" $inputs > /dev/null 2>/dev/null; } 2>&1 ) |"
            rm -f "$WORK"/tl.*
            NEUROMAP_TRACE="$WORK/tl" "$PY" -m neuromap align --quiet --processes -t "$THREADS" "$genome" $inputs > /dev/null
            echo; "$PY" benchmarks/timeline.py "$WORK/tl" | awk 'NR <= 40'; echo
            if command -v py-spy > /dev/null; then
                timeout 120 "$PY" benchmarks/spy_processes.py "$genome" $inputs --threads "$THREADS" --delay 2.5 --seconds 2
            fi
        done
    } > "$OUT/RESULTS-gpu-pe-why.md" 2>&1
    cat "$OUT/RESULTS-gpu-pe-why.md"
fi
# A/B of whole runs on the same machine: this tree's neuromap ("new"), the package in $OLD_TREE
# when there is one ("old": an earlier commit's neuromap/, git archive COMMIT neuromap | tar -x -C
# .old), and "new" with an environment: new-late (NEUROMAP_DEVICE_EARLY=0), new-blocking (the
# network's host threads block while the GPU works instead of spinning:
# TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE=blocking_sync), new-spare (as many spare worker processes
# as -t: NEUROMAP_SPARE_WORKERS=$THREADS), new-avx2 (this tree with the kernels built with
# -DNEUROMAP_NO_AVX512: no AVX-512 clones of the SIMD loops, as before the tenth lease, or
# .bin/neuromap_kernels_avx2.so, in a copy of the package, and both trees' seconds per kernel), new-glibc (the main process with
# glibc's own malloc thresholds: a GLIBC_TUNABLES in the environment leaves them, see
# pipeline.keep_freed_buffers), new-parkN (each worker parks up to N batches while the network
# starts: NEUROMAP_PARK_BATCHES=N), new-steadyN (and up to N at once after, each while it waits
# for a model call: NEUROMAP_PARK_STEADY=N), new-nopreload (each call size's compiled program
# loaded when its first call comes, as before the twentieth session: NEUROMAP_PRELOAD_PROGRAMS=0); AB_VARIANTS picks (default "new
# new-blocking"). Wall seconds, SAM to /dev/null, -t $THREADS --processes, in turn twice on 10 x
# the SE reads, once on the SE reads and once on the PE pairs, then each variant traced once on
# the SE reads.
# A variant of neuromap for the A/B rows: "old" (the package in $OLD_TREE), "new" (this tree), or
# "new-" and parts joined by "-", each an environment or a tree (new-avx2-park4: both).
OLD_TREE=${OLD_TREE:-$PWD/.old}
AVX2_TREE="$WORK/avx2-tree"
variant() {  # NAME, then align's arguments
    local name=$1 tree=$PWD part; shift
    local -a envs=() extra=()
    if [ "$name" = old ]; then (cd "$OLD_TREE" && "$PY" -m neuromap align --quiet "$@"); return; fi
    for part in $(tr '-' ' ' <<< "${name#new}"); do
        case $part in
            late) envs+=(NEUROMAP_DEVICE_EARLY=0) ;;
            blocking) envs+=(TF_CUDA_PLATFORM_GPU_DEVICE_SCHEDULE=blocking_sync) ;;
            spare) envs+=(NEUROMAP_SPARE_WORKERS=$THREADS) ;;
            glibc) envs+=(GLIBC_TUNABLES=glibc.malloc.check=0) ;;
            park*) envs+=(NEUROMAP_PARK_BATCHES=${part#park}) ;;
            steady*) envs+=(NEUROMAP_PARK_STEADY=${part#steady}) ;;
            nopreload) envs+=(NEUROMAP_PRELOAD_PROGRAMS=0) ;;
            avx2) tree=$AVX2_TREE ;;
            K[0-9]*) extra+=(-K "${part#K}") ;;
            *) echo "unknown variant part: $part" >&2; return 2 ;;
        esac
    done
    (cd "$tree" && env "${envs[@]}" "$PY" -m neuromap align --quiet "${extra[@]}" "$@")
}
prepare_variants() {  # VARIANTS: the trees they need (.old's kernels, the AVX2-only tree)
    [ -d "$OLD_TREE/neuromap" ] && cp neuromap/_kernels*.so "$OLD_TREE/neuromap/"
    if [[ " $1 " == *avx2* ]] && [ ! -d "$AVX2_TREE/neuromap" ]; then
        rm -rf "$AVX2_TREE"; mkdir -p "$AVX2_TREE/benchmarks"; cp -r neuromap "$AVX2_TREE/"; rm -f "$AVX2_TREE"/neuromap/_kernels*.so
        cp benchmarks/profile_align.py "$AVX2_TREE/benchmarks/"
        EXT=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
        gcc -O3 -std=gnu11 -fno-math-errno -shared -fPIC -DNEUROMAP_NO_PYTHON -DNEUROMAP_NO_AVX512 neuromap/_kernels.c -o "$AVX2_TREE/neuromap/_kernels$EXT" ||
            cp .bin/neuromap_kernels_avx2.so "$AVX2_TREE/neuromap/_kernels$EXT"
        "$PY" -m compileall -q "$AVX2_TREE/neuromap" > /dev/null
    fi
}
same_sam_as_new() {  # VARIANT: a line saying whether it writes new's SAM (records, not @PG) on the SE reads and the PE pairs (those simulated)
    local same=yes what inputs checked=""
    for what in "the SE reads|$G $R" "the PE pairs|$WORK/pe/genome.fa $WORK/pe/r1.fq $WORK/pe/r2.fq"; do
        inputs=${what#*|}
        [ -s "${inputs##* }" ] || continue
        checked="$checked ${what%%|*},"
        variant new --processes -t "$THREADS" $inputs | grep -v '^@PG' > "$WORK/ab-a.sam"
        variant "$1" --processes -t "$THREADS" $inputs | grep -v '^@PG' > "$WORK/ab-b.sam"
        grep -qv '^@' "$WORK/ab-a.sam" && cmp -s "$WORK/ab-a.sam" "$WORK/ab-b.sam" || same=no
    done
    [ -n "$checked" ] && [ $same = yes ] && echo "- $1's SAM is new's, record for record, on${checked%,}" || echo "- $1's SAM DIFFERS from new's (or no records, or no input; checked:${checked%,})"
}
if wants ab; then
    make_big
    VARIANTS=${AB_VARIANTS:-new new-blocking}; [ -d "$OLD_TREE/neuromap" ] && VARIANTS="old $VARIANTS"
    prepare_variants "$VARIANTS"
    {
        echo "# A/B ($(date -u '+%Y-%m-%d %H:%M UTC'), -t $THREADS --processes, SAM to /dev/null): wall seconds"
        P1="$WORK/pe/r1.fq"; P2="$WORK/pe/r2.fq"; PG="$WORK/pe/genome.fa"
        echo
        for v in $VARIANTS; do variant "$v" --processes -t "$THREADS" "$G" <(head -n 36000 "$R") > /dev/null; done
        for v in $VARIANTS; do
            variant "$v" --processes -t "$THREADS" --stats "$WORK/ab-stats.json" "$G" <(head -n 4000 "$R") > /dev/null
            echo "- workers of $v: $(grep '"workers"' "$WORK/ab-stats.json" | tr -d ' ')"
        done
        echo; echo "| variant | $(( $(wc -l < "$BIG") / 4 )) reads, round 1 | round 2 | $(( $(wc -l < "$R") / 4 )) reads | $(( $(wc -l < "$P1") / 4 )) pairs |"; echo "|---|---|---|---|---|"
        declare -A T1 T2 T3 T4
        for v in $VARIANTS; do T1[$v]=$( { time variant "$v" --processes -t "$THREADS" "$G" "$BIG" > /dev/null; } 2>&1 ); done
        for v in $VARIANTS; do T2[$v]=$( { time variant "$v" --processes -t "$THREADS" "$G" "$BIG" > /dev/null; } 2>&1 ); done
        for v in $VARIANTS; do T3[$v]=$( { time variant "$v" --processes -t "$THREADS" "$G" "$R" > /dev/null; } 2>&1 ); done
        "$PY" -m neuromap index "$PG" > /dev/null 2>&1
        for v in $VARIANTS; do T4[$v]=$( { time variant "$v" --processes -t "$THREADS" "$PG" "$P1" "$P2" > /dev/null 2>/dev/null; } 2>&1 ); done
        for v in $VARIANTS; do echo "| neuromap $v | ${T1[$v]} | ${T2[$v]} | ${T3[$v]} | ${T4[$v]} |"; done
        echo "| neuromap new --no-neural | $( { time "$PY" -m neuromap align --quiet --no-neural --processes -t "$THREADS" "$G" "$BIG" > /dev/null; } 2>&1 ) | | | $( { time "$PY" -m neuromap align --quiet --no-neural --processes -t "$THREADS" "$PG" "$P1" "$P2" > /dev/null 2>/dev/null; } 2>&1 ) |"
        echo "| minimap2 -x sr | $( { time minimap2 -a -x sr -t "$THREADS" "$G" "$BIG" > /dev/null 2>/dev/null; } 2>&1 ) | | $( { time minimap2 -a -x sr -t "$THREADS" "$G" "$R" > /dev/null 2>/dev/null; } 2>&1 ) | $( { time minimap2 -a -x sr -t "$THREADS" "$PG" "$P1" "$P2" > /dev/null 2>/dev/null; } 2>&1 ) |"
        if [[ " $VARIANTS " == *" new-avx2 "* ]]; then
            echo
            grep -q avx512bw /proc/cpuinfo && echo "- this CPU has AVX-512 (new runs its clones, new-avx2 the AVX2 ones)" || echo "- this CPU has no AVX-512: both run the AVX2 code"
            same_sam_as_new new-avx2
            for tree in "$PWD" "$AVX2_TREE"; do
                echo; echo "Seconds per kernel, one process, $( [ "$tree" = "$PWD" ] && echo new || echo new-avx2):"; echo
                "$PY" "$tree/benchmarks/profile_align.py" "$G" "$R" --reads $((10 * 4000)) --kernels | sed -n '3,12p'
            done
        fi
        for v in $VARIANTS; do
            rm -f "$WORK"/tl.*
            NEUROMAP_TRACE="$WORK/tl" variant "$v" --processes -t "$THREADS" "$G" "$R" > /dev/null
            echo; echo "## $v"; echo; "$PY" benchmarks/timeline.py "$WORK/tl" | awk '(NR >= 3 && NR <= 30) || /^network|^  calls/'
        done
    } > "$OUT/RESULTS-gpu-ab.md" 2>&1
    cat "$OUT/RESULTS-gpu-ab.md"
fi
# A/B at scale: AB_VARIANTS (default "new new-avx2") over AB_INPUTS (default "se pe"): se, 4M
# single-end reads (the SE reads 10 times over); pe, 1M pairs (the PE pairs 10 times over); pe20,
# 2M pairs (20 times over: as many reads as se). AB_ROUNDS rounds (default 3), each round the
# variants in a rotated order and then minimap2 (its index built before), -t $THREADS
# --processes, SAM to /dev/null; then each variant's median seconds and median ratio to minimap2
# over the rounds (ab_scale_summary.py). A variant with its own tree (avx2) is first checked
# to write new's SAM, record for record, on the SE reads and the PE pairs. AB_TRACE=INPUT (one of
# AB_INPUTS): then each variant once more on it, traced (timeline.py: the start's milestones, each
# worker's time computing and waiting, the network's calls and how long they took).
ab_input() {  # INPUT: the reference and reads of an ab-scale input
    case $1 in
        se) echo "$G $BIG" ;;
        pe) echo "$PE10/genome.fa $PE10/r1.fq $PE10/r2.fq" ;;
        pe20) echo "$PE20/genome.fa $PE20/r1.fq $PE20/r2.fq" ;;
        *) echo "unknown AB_INPUTS entry: $1" >&2; return 2 ;;
    esac
}
if wants ab-scale; then
    INPUTS=" ${AB_INPUTS:-se pe} "
    [[ "$INPUTS" == *" se "* ]] && make_big
    [[ "$INPUTS" == *" pe "* ]] && make_pe10
    [[ "$INPUTS" == *" pe20 "* ]] && make_pe20
    VARIANTS=${AB_VARIANTS:-new new-avx2}; prepare_variants "$VARIANTS"
    for what in $INPUTS; do read -ra files <<< "$(ab_input "$what")"; genome=${files[0]}
        [ -s "${genome%.fa}.why.mmi" ] || minimap2 -x sr -d "${genome%.fa}.why.mmi" "$genome" 2> /dev/null; done
    TIMES="$OUT/ab-scale.tsv"; : > "$TIMES"  # in $OUT: back even if the lease is cut short
    {
        echo "# A/B at scale ($(date -u '+%Y-%m-%d %H:%M UTC'), -t $THREADS --processes, SAM to /dev/null): wall seconds"; echo
        echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; AVX-512: $(grep -q avx512bw /proc/cpuinfo && echo yes || echo no)"
        echo "- neuromap $(git rev-parse --short HEAD 2>/dev/null || echo "(no git here)"), $("$PY" --version 2>&1), minimap2 $(minimap2 --version)"
        for v in $VARIANTS; do
            if [[ "$INPUTS" == *" se "* ]]; then  # the index in the page cache, the network's program kept
                variant "$v" --processes -t "$THREADS" "$G" <(head -n 36000 "$R") > /dev/null
            else
                variant "$v" --processes -t "$THREADS" "$PE10/genome.fa" <(head -n 16000 "$PE10/r1.fq") <(head -n 16000 "$PE10/r2.fq") > /dev/null
            fi
            [[ "$v" == *avx2* ]] && same_sam_as_new "$v"
        done
        read -ra order <<< "$VARIANTS"
        for round in $(seq 1 "${AB_ROUNDS:-3}"); do
            for v in "${order[@]}"; do
                for what in $INPUTS; do read -ra files <<< "$(ab_input "$what")"
                    echo -e "$round\t$v\t$what\t$( { time variant "$v" --processes -t "$THREADS" "${files[@]}" > /dev/null; } 2>&1 )" >> "$TIMES"; done
            done
            for what in $INPUTS; do read -ra files <<< "$(ab_input "$what")"; files[0]="${files[0]%.fa}.why.mmi"
                echo -e "$round\tminimap2\t$what\t$( { time minimap2 -a -x sr -t "$THREADS" "${files[@]}" > /dev/null 2>/dev/null; } 2>&1 )" >> "$TIMES"; done
            order=("${order[@]:1}" "${order[0]}")  # the next round starts with the next variant
        done
        if [ -n "${AB_TRACE:-}" ]; then
            read -ra files <<< "$(ab_input "$AB_TRACE")"
            for v in $VARIANTS; do
                rm -f "$WORK"/tl.*
                NEUROMAP_TRACE="$WORK/tl" variant "$v" --processes -t "$THREADS" "${files[@]}" > /dev/null
                echo; echo "## $v, traced on $AB_TRACE"; echo
                [[ "$v" == *steady* || "$v" == *park* ]] && echo "(parked batches: a worker's threads compute and wait at once, so its columns overlap)" && echo
                "$PY" benchmarks/timeline.py "$WORK/tl" | awk '/^workers per slice/ {exit} NR >= 3'
            done
        fi
        echo; "$PY" benchmarks/ab_scale_summary.py "$TIMES" --se "$([ -s "$BIG" ] && echo "$(( $(wc -l < "$BIG") / 4 )) reads")" \
            --pe "$([ -s "$PE10/r1.fq" ] && echo "$(( $(wc -l < "$PE10/r1.fq") / 4 )) pairs")" \
            --pe20 "$([ -s "$PE20/r1.fq" ] && echo "$(( $(wc -l < "$PE20/r1.fq") / 4 )) pairs")"
    } > "$OUT/RESULTS-gpu-ab-scale.md" 2>&1
    cat "$OUT/RESULTS-gpu-ab-scale.md"
fi
# Does a pair's score depend on the other pairs in its model call, or on the call's shape? Merging
# several workers' calls into one (half as many calls) would keep the output only if it does not.
wants independence && timeout 180 "$PY" benchmarks/call_independence.py --bucket 1024 > "$OUT/RESULTS-gpu-call-independence.md" &&
    { echo; timeout 120 "$PY" benchmarks/call_independence.py --bucket 1024 --dtype bfloat16 | tail -n +4; } >> "$OUT/RESULTS-gpu-call-independence.md"
wants independence && cat "$OUT/RESULTS-gpu-call-independence.md"
# The banded DP on the GPU (JAX, bit for bit the C kernel's) against the C kernel on one core: is a device DP worth building?
wants dp && timeout 180 "$PY" benchmarks/dp_device.py "$WORK/se/genome.fa" "$WORK/se/reads.fq" --reads "$PROFILE_READS" --sizes 512 2048 8192 32768 \
    > "$OUT/RESULTS-gpu-dp.md" && cat "$OUT/RESULTS-gpu-dp.md"
wants workers && timeout 120 "$PY" benchmarks/worker_start.py "$WORK/se/genome.fa" "$WORK/se/reads.fq" --threads 2 "$THREADS" --reads $((1000 * THREADS)) \
    > "$OUT/RESULTS-gpu-worker-start.md" && cat "$OUT/RESULTS-gpu-worker-start.md"
stamp "done"
