#!/usr/bin/env bash
# CUDA smoke check of the Mistral, Falcon, BERT and T5 families through the one training loop
# (bf16 autocast, fused AdamW, each family's own objective), then T5 generation on CUDA.
#   bash benchmarks/gpu_families.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-/tmp/lmforge_gpu}
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=/tmp/lmforge_gpu_fam
rm -rf "$R"; mkdir -p "$OUT"
python3 -m lmforge.cli prepare --source.max_documents 200 --out_dir $R/documents > /dev/null
python3 -m lmforge.cli tokenizer --input $R/documents/train.jsonl --out_dir $R/tokenizer --vocab_size 4096 > /dev/null
python3 -m lmforge.cli encode --documents_dir $R/documents --tokenizer_dir $R/tokenizer --out_dir $R/shards --num_workers 8 > /dev/null
for preset in mistral-quickstart falcon-quickstart bert-quickstart t5-quickstart; do
  python3 -m lmforge.cli pretrain --model.preset $preset --model.vocab_size 0 --train.shards_dir $R/shards \
    --train.tokenizer_dir $R/tokenizer --train.run_dir $R/$preset --train.seq_len 256 --train.batch_size 32 \
    --train.max_steps 200 --train.eval_interval 100 --train.precision bf16 --train.log_interval 100 \
    --optim.lr 2e-3 --optim.warmup_steps 20 2>&1 | grep -v "^step"
done
python3 -m lmforge.cli generate $R/t5-quickstart --prompt "import os" --max_new_tokens 24 --temperature 0
