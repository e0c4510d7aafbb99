#!/usr/bin/env bash
# Every benchmark in benchmarks/, in one go. Needs the demo database of
# `make run` (mmlu-pro imported and a router fitted); llmrouter-9 is imported from $LLMROUTER9_DIR when that folder exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONUNBUFFERED=1
mkdir -p benchmarks/results
$PY benchmarks/embedder_speed.py --prompts 1000 --out benchmarks/results/embedder_speed.md
LLMROUTER9_DIR="${LLMROUTER9_DIR:-../shared/data/llmrouter-9}"
if [ -d "$LLMROUTER9_DIR" ]; then
  $PY manage.py import_routing_data "$LLMROUTER9_DIR" --name llmrouter-9
fi
for dataset in mmlu-pro llmrouter-9; do
  if $PY manage.py shell -c "from registry.models import PromptSet; raise SystemExit(0 if PromptSet.objects.filter(name='$dataset').exists() else 1)" 2>/dev/null; then
    $PY manage.py evaluate --dataset "$dataset" --trials 20 --seed 0 --cost price \
      --json "benchmarks/results/evaluate_$dataset.json" --plot "benchmarks/results/evaluate_$dataset.png"
    $PY benchmarks/paired.py "benchmarks/results/evaluate_$dataset.json" \
      relative_maps:uniroute_learnedmap relative_maps:uniroute_kmeans uniroute_learnedmap:knn uniroute_kmeans:knn
  fi
done
# Routing area of every embedder, paired against MiniLM (embeds each set once per embedder, cached).
$PY benchmarks/embedder_quality.py --dataset mmlu-pro --dataset llmrouter-9 \
  --embedders minilm-onnx,minilm-onnx-int8,minilm-static --out benchmarks/results/embedder_quality.md
$PY benchmarks/api_load.py --out benchmarks/results/api_load.md
$PY benchmarks/profile_llm.py
$PY benchmarks/dashboard_pages.py --out benchmarks/results/dashboard_pages.md
