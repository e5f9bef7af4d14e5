"""Two processes (DDP, gloo on CPU) train like one process on the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from training_helpers import IMAGE_SIZE, tiny_model, tiny_processor

from hyperseg.training.synthetic import synthetic_dataset

SCRIPT = Path(__file__).with_name("shared_points_finetune.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _finetune(model_dir, data_dir, output_dir, per_device_batch_size: int, num_processes: int) -> None:
    arguments = [
        "--model", str(model_dir), "--dataset", str(data_dir), "--output_dir", str(output_dir), "--train_mode", "full",
        "--max_steps", "1", "--per_device_train_batch_size", str(per_device_batch_size), "--logging_steps", "1",
        "--save_strategy", "no", "--optim", "sgd", "--learning_rate", "0.1", "--lr_scheduler_type", "constant",
        "--max_grad_norm", "0", "--use_cpu", "--activation_checkpointing", "false", "--seed", "0",
        "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    if num_processes == 1:
        command = [sys.executable, str(SCRIPT), *arguments]
    else:
        # `--multi_gpu` is what starts several processes, also on CPU (accelerate's `--cpu` alone starts one)
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), str(SCRIPT), *arguments,
        ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_processes_first_step_matches_one_process_on_the_same_global_batch(tmp_path):
    model_dir, data_dir = tmp_path / "model", tmp_path / "data"
    tiny_model().save_pretrained(model_dir)
    tiny_processor().save_pretrained(model_dir)
    synthetic_dataset(8, seed=5, tasks=("referring",), height=IMAGE_SIZE, width=IMAGE_SIZE).save_to_disk(data_dir)

    _finetune(model_dir, data_dir, tmp_path / "two", per_device_batch_size=2, num_processes=2)
    _finetune(model_dir, data_dir, tmp_path / "one", per_device_batch_size=4, num_processes=1)

    losses = {
        name: json.loads((tmp_path / name / "log_history.json").read_text())[0]["loss"] for name in ("one", "two")
    }
    assert abs(losses["two"] - losses["one"]) <= 1e-5 * max(1.0, abs(losses["one"])), losses

    # the SGD step is the same: DDP averaged the two halves' gradients into the whole batch's gradient. Steps are
    # compared to 1e-4 of their size, plus the float32 rounding of the stored weights they were read from, plus 1e-6
    # of the largest step (for parameters whose exact gradient is 0, e.g. attention key biases, and gets only noise)
    initial = load_file(model_dir / "model.safetensors")
    one, two = (load_file(tmp_path / name / "model.safetensors") for name in ("one", "two"))
    steps = {key: (one[key] - start, two[key] - start) for key, start in initial.items()}
    largest = max(step.abs().max().item() for step, _ in steps.values())
    rounding = 4 * torch.finfo(torch.float32).eps
    for key, (step_one, step_two) in steps.items():
        tolerance = 1e-4 * step_one.abs().max().item() + rounding * initial[key].abs().max().item() + 1e-6 * largest
        torch.testing.assert_close(step_two, step_one, rtol=0, atol=tolerance, msg=key)
    assert sum(step.abs().max().item() > 1e-6 * largest for step, _ in steps.values()) > 0.75 * len(steps)
