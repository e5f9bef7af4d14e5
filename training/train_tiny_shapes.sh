#!/usr/bin/env bash
# The commands that produced checkpoints/hyperseg-tiny-shapes (see model_cards/hyperseg-tiny-shapes.md):
# a randomly initialised tiny HyperSeg, trained from scratch on synthetic referring + panoptic scenes by two DDP
# processes on a 2-core CPU, then exported without its remote-code files.
#   bash training/train_tiny_shapes.sh OUT
# writes OUT/init, OUT/trained (stage 1), OUT/refined (stage 2) and OUT/export; copy OUT/export to checkpoints/
set -euo pipefail
OUT=${1:?usage: bash training/train_tiny_shapes.sh OUTPUT_DIR}
# one thread per process: two processes on two cores (more threads only wait on each other)
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
# `--multi_gpu` is what starts two processes on a CPU-only machine too (gloo); `--cpu` alone would start one
LAUNCH=(accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no)
COMMON=(--train_mode full --per_device_train_batch_size 4 --weight_decay 0.05 --lr_scheduler_type cosine
    --optim adamw_torch_fused --logging_steps 100 --use_cpu --activation_checkpointing false --check_data false)
python -m hyperseg.training.shapes_model --output_dir "$OUT/init" --seed 0
# stage 1: referring : panoptic rows 1 : 2, 7000 steps from scratch
"${LAUNCH[@]}" -m hyperseg.training.finetune --model "$OUT/init" --dataset synthetic \
    --synthetic_tasks referring,panoptic,panoptic --synthetic_samples 20000 --synthetic_seed 0 \
    --synthetic_image_size 128 --output_dir "$OUT/trained" --max_steps 7000 --learning_rate 1e-3 \
    --warmup_steps 150 --save_steps 1000 --seed 42 "${COMMON[@]}"
# stage 2: referring : panoptic 2 : 1 on scenes with more look-alike shapes (more "... on the left" / "... left of
# ..." expressions), 1200 steps at a lower learning rate
"${LAUNCH[@]}" -m hyperseg.training.finetune --model "$OUT/trained" --dataset synthetic \
    --synthetic_tasks referring,referring,panoptic --synthetic_samples 6000 --synthetic_seed 5 \
    --synthetic_duplicate_probability 0.6 --synthetic_image_size 128 --output_dir "$OUT/refined" --max_steps 1200 \
    --learning_rate 2e-4 --warmup_steps 50 --save_steps 100000 --seed 43 "${COMMON[@]}"
python -m hyperseg.training.shapes_model --export_from "$OUT/refined" --output_dir "$OUT/export"
