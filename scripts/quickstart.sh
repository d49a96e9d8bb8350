#!/usr/bin/env bash
# `make quickstart`: the whole workflow on a synthetic stand-in of VocalSound, on CPU, in a few minutes.
#   1. write a synthetic release in the official layout;
#   2. turn it into a `datasets` dataset folder (Parquet + card with the fbank stats);
#   3. fine-tune a small AST with `accelerate launch train_hf.py recipes/quickstart.yaml`
#      (evaluation on validation and test, subgroup table, results.json, all_eval_result.csv, model card);
#   4. classify a clip with the saved model through a plain transformers pipeline.
# Everything goes to outputs/quickstart (git-ignored); a rerun starts from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=outputs/quickstart
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# One OpenMP thread per process unless told otherwise: on a 2-core machine that is also busy with other work,
# torch's multi-threaded CPU kernels slow down many times over (a tiny model's epoch: 44 s with 2 threads, 1.6 s
# with 1, measured under load).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

rm -rf "$OUT"
mkdir -p "$OUT"
start=$SECONDS

echo "== 1/4 synthetic release -> $OUT/vs_release_16k"
"$BIN/vocalsound-hf" synth-release "$OUT/vs_release_16k"

echo "== 2/4 datasets dataset -> $OUT/dataset"
"$BIN/vocalsound-hf" export-dataset --data-dir "$OUT/vs_release_16k" --out "$OUT/dataset"

echo "== 3/4 fine-tune and evaluate -> $OUT/model"
# One process; for two CPU processes use --config_file recipes/accelerate/cpu_2proc.yaml instead.
"$BIN/accelerate" launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
    train_hf.py recipes/quickstart.yaml --dataset_name "$OUT/dataset" --output_dir "$OUT/model"
cat "$OUT/model/all_eval_result.csv"

echo "== 4/4 classify a clip with transformers.pipeline"
clip=$(find "$OUT/vs_release_16k/audio_16k" -name '*_cough.wav' -size +20k | sort | sed -n 1p)  # sed reads all input: head would SIGPIPE sort under pipefail
"$BIN/python" - "$OUT/model" "$clip" <<'PY'
import sys

import soundfile
from transformers import pipeline

classifier = pipeline("audio-classification", model=sys.argv[1])
audio, rate = soundfile.read(sys.argv[2], dtype="float32")
print(sys.argv[2])
for guess in classifier({"raw": audio, "sampling_rate": rate}, top_k=3):
    print(f"  {guess['label']:<16} {guess['score']:.3f}")
PY
echo "== done in $((SECONDS - start)) s; model, results.json and README.md (model card) in $OUT/model"
