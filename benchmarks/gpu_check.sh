#!/usr/bin/env bash
# One short end-to-end check on a CUDA machine (the lent H100/H200), run from the repo root
# with the machine's own python3 (torch, tokenizers, sentencepiece, safetensors there):
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# 1. prepare -> tokenizer -> encode the stdlib corpus; 2. pretrain llama-135m in bf16
# (fused AdamW, autocast) for a short budget, evaluate, generate; 3. the throughput
# benchmark against HF transformers in bf16. Prints MFU from the H100/H200 peak table.
set -euo pipefail
OUT=${1:-/tmp/lmforge_gpu}
export PYTHONPATH=src PYTHONUNBUFFERED=1
R=/tmp/lmforge_gpu_run
rm -rf "$R"; mkdir -p "$OUT"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m lmforge.cli prepare --out_dir $R/documents
python3 -m lmforge.cli tokenizer --input $R/documents/train.jsonl --out_dir $R/tokenizer --vocab_size 8192
python3 -m lmforge.cli encode --documents_dir $R/documents --tokenizer_dir $R/tokenizer --out_dir $R/shards --num_workers 8
python3 -m lmforge.cli pretrain --config configs/quickstart.yaml --model.preset llama-135m --model.max_seq_len 1024 \
  --model.vocab_size 0 --train.shards_dir $R/shards --train.tokenizer_dir $R/tokenizer --train.run_dir $R/run \
  --train.seq_len 1024 --train.batch_size 16 --train.max_steps 300 --train.max_seconds 90 --optim.lr 1e-3 \
  --train.eval_interval 100 --train.checkpoint_interval 150 --train.precision bf16 --train.log_interval 25
cp $R/run/summary.json $R/run/metrics.jsonl "$OUT"/
python3 -m lmforge.cli evaluate $R/run --data $R/shards
python3 -m lmforge.cli generate $R/run --prompt "import os" --max_new_tokens 64 --temperature 0.7 --top_k 50
python3 benchmarks/train_throughput.py --device cuda --dtype bf16 --configs gpt2-124m,llama-135m \
  --batch-size 16 --seq-len 1024 --steps 10 | tee "$OUT"/bench_bf16.txt
