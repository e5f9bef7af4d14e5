#!/usr/bin/env bash
# The commands that produced checkpoints/hyperseg-tiny-shapes (see model_cards/hyperseg-tiny-shapes.md):
# a randomly initialised tiny HyperSeg, trained from scratch on synthetic referring + panoptic scenes by two DDP
# processes on a 2-core CPU, then exported without its remote-code files.
#   bash training/train_tiny_shapes.sh OUT      (OUT/init, OUT/trained, OUT/export; copy OUT/export to checkpoints/)
set -euo pipefail
OUT=${1:?usage: bash training/train_tiny_shapes.sh OUTPUT_DIR}
# one thread per process: two processes on two cores (more threads only wait on each other)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
python -m hyperseg.training.shapes_model --output_dir "$OUT/init" --seed 0
# `--multi_gpu` is what starts two processes on a CPU-only machine too (gloo); `--cpu` alone would start one
accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
    -m hyperseg.training.finetune --model "$OUT/init" --dataset synthetic --synthetic_tasks referring,panoptic \
    --synthetic_samples 20000 --synthetic_seed 0 --synthetic_image_size 128 --output_dir "$OUT/trained" \
    --train_mode full --max_steps 7000 --per_device_train_batch_size 4 --learning_rate 1e-3 --weight_decay 0.05 \
    --warmup_steps 150 --lr_scheduler_type cosine --logging_steps 100 --save_steps 1000 --use_cpu \
    --activation_checkpointing false --check_data false --seed 42
python -m hyperseg.training.shapes_model --export_from "$OUT/trained" --output_dir "$OUT/export"
