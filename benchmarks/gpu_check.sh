#!/usr/bin/env bash
# The GPU check: tests/test_cuda.py, and beside it the residual-depth ablation at the width the 2-core CPU could not
# afford (docs/ablation.md, "On a GPU"), in shards that run in parallel and are merged at the end.
#
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR [SECONDS]
#
# DATA_DIR holds sst2/ and imdb/ Parquet files (../shared/data). SECONDS (default 300) bounds each ablation shard:
# a shard stopped there keeps the runs it finished (each is written as it ends), and the merged table counts seeds.
# OUT_DIR gets: env.txt, test_cuda.log, ablation.log and ablation/ (ablation.json, ablation.md, two plots).
# DEVICE=cpu ABLATION_FLAGS="--quick" runs the same steps on a machine without a GPU (a dry run of this script).
set -u
if [ $# -lt 2 ] || [ ! -d "$1/sst2" ] || [ ! -d "$1/imdb" ]; then
    echo "usage: bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR [SECONDS]  (DATA_DIR holds sst2/ and imdb/)" >&2
    exit 2
fi
data=$(realpath "$1")
out=$(realpath -m "$2")
budget=${3:-300}
cd "$(dirname "$0")/.."  # the repository root: the tests and the ablation script are run from there
device=${DEVICE:-cuda}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
mkdir -p "$out"
shards=$(mktemp -d)

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    "$python" -c 'import torch, transformers, tokenizers, datasets, evaluate, platform
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "datasets", datasets.__version__, "evaluate", evaluate.__version__)'
    echo "cpus $(nproc --all)"  # --all: nproc alone obeys OMP_NUM_THREADS
} >"$out/env.txt" 2>&1

# The ablation at the issue's width: hidden 64 per direction (stack width 128 = the embedding, no projection), batch
# 32, truncation at 128 tokens; every mode, seeds 0-2. A shard is one data set, one seed and depths of about equal
# cost (12 + 1 against 8 + 4 + 2), deepest first, so a shard cut short loses shallow runs first.
read -r -a extra <<<"${ABLATION_FLAGS:-}"
flags=(--device "$device" --data-dir "$data" --hidden 64 --embedding 128 --batch-size 32 --max-length 128 "${extra[@]}")
for dataset in sst2 imdb; do
    for seed in 0 1 2; do
        for depths in "12 1" "8 4 2"; do
            name="$dataset-seed$seed-depths${depths// /_}"
            # shellcheck disable=SC2086  # $depths is a list of numbers
            timeout "$budget" "$python" benchmarks/ablation.py "${flags[@]}" --datasets "$dataset" --seeds "$seed" \
                --depths $depths --out "$shards/$name" >"$shards/$name.log" 2>&1 &
        done
    done
done

"$python" -m pytest tests/test_cuda.py -q -ra -p no:cacheprovider >"$out/test_cuda.log" 2>&1
echo "pytest exit status: $?" >>"$out/test_cuda.log"
wait

for log in "$shards"/*.log; do
    echo "=== $(basename "$log")"
    grep -E "\] |Error|error|Traceback" "$log" | tail -40
done >"$out/ablation.log"
done_shards=$(find "$shards" -name ablation.json -printf '%h\n' | sort)
if [ -n "$done_shards" ]; then
    # shellcheck disable=SC2086  # folder names have no spaces (mktemp)
    "$python" benchmarks/ablation.py --out "$out/ablation" --merge $done_shards >>"$out/ablation.log" 2>&1
fi
tail -3 "$out/test_cuda.log"
grep -c "\] " "$out/ablation.log" | sed 's/^/ablation runs finished: /'
