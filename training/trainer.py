"""`Trainer` for HyperSeg: task-homogeneous batches, video clips, and checkpoints that resume exactly."""

from collections.abc import Sequence
from pathlib import Path

import datasets
import torch
from peft import PeftModel
from torch.utils.data import Sampler
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from .recipe import TRAINABLE_PARAMETERS_FILE, load_trainable_parameters, save_trainable_parameters


class TaskGroupedSampler(Sampler[int]):
    """
    A random order of the rows in which every run of `batch_size` consecutive indices holds one task. With
    `batch_size` = per-process batch size x number of processes, the DDP shards of whole batches that the processes
    run together share one task, so that they also run the same collective operations (the loss averages its
    normaliser over processes).

    Per epoch the rows of each task are shuffled and cut into batches, the last one filled up with random rows of the
    same task; then the batches are shuffled. The order depends only on `seed` and the epoch.
    """

    def __init__(self, tasks: Sequence[str], batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.rows_by_task = {}
        for index, task in enumerate(tasks):
            self.rows_by_task.setdefault(task, []).append(index)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(-(-len(rows) // self.batch_size) * self.batch_size for rows in self.rows_by_task.values())

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        batches = []
        for task in sorted(self.rows_by_task):
            rows = torch.tensor(self.rows_by_task[task])
            rows = rows[torch.randperm(len(rows), generator=generator)]
            missing = -len(rows) % self.batch_size
            if missing:
                rows = torch.cat([rows, rows[torch.randint(len(rows), (missing,), generator=generator)]])
            batches.extend(rows.view(-1, self.batch_size))
        for batch in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[batch].tolist()


def clip_loss(model, video_frames: list[dict]) -> tuple[torch.Tensor, list]:
    """
    Runs the frames of a clip in order, each fed the previous frame's `temporal_latents` (gradients flow through
    them), and returns the mean of the frame losses and the frame outputs.
    """
    latents, losses, outputs = None, [], []
    for frame_inputs in video_frames:
        frame_outputs = model(**frame_inputs, temporal_latents=latents)
        latents = frame_outputs.temporal_latents
        losses.append(frame_outputs.loss)
        outputs.append(frame_outputs)
    return torch.stack(losses).mean(), outputs


class _CollatorEpochCallback(TrainerCallback):
    """Tells the data collator the epoch, which seeds its per-row random choices."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_epoch(int(state.epoch or 0))


class HyperSegTrainer(Trainer):
    """
    [`Trainer`] with what HyperSeg's data and weights need:

    - batches hold one task, the same on every process ([`TaskGroupedSampler`]), when the training set is a
      `datasets.Dataset` with a `task` column (under DDP, clips must also have the same number of frames);
    - a video batch (`video_frames` from [`HyperSegDataCollator`]) runs its frames in order, feeding each frame the
      previous frame's `temporal_latents` (gradients flow through them); its loss is the mean over frames;
    - the data collator learns the epoch (`set_epoch`, which seeds its random choices per row);
    - resuming restores every weight: `save_pretrained` writes the Swin backbone under its original key names, which
      the stock `load_state_dict` resume would silently skip, so full checkpoints are reloaded with `from_pretrained`;
      under LoRA the trained parameters PEFT does not save (`mask_queries`) are checkpointed beside the adapter.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if hasattr(self.data_collator, "set_epoch"):
            self.add_callback(_CollatorEpochCallback(self.data_collator))

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not isinstance(dataset, datasets.Dataset) or "task" not in dataset.column_names:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        batch_size = self.args.train_batch_size * max(1, self.args.world_size)
        return TaskGroupedSampler(list(dataset["task"]), batch_size, seed=seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "video_frames" not in inputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        loss, outputs = clip_loss(model, inputs["video_frames"])
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        model = self.accelerator.unwrap_model(self.model)
        if isinstance(model, PeftModel) and self.args.should_save:
            save_trainable_parameters(model, output_dir if output_dir is not None else self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        checkpoint = Path(resume_from_checkpoint)
        if isinstance(model, PeftModel):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            if (checkpoint / TRAINABLE_PARAMETERS_FILE).exists():
                load_trainable_parameters(model, checkpoint)
            return
        has_weights = any((checkpoint / name).exists() for name in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME))
        if isinstance(model, PreTrainedModel) and (checkpoint / CONFIG_NAME).exists() and has_weights:
            # from_pretrained maps the saved (original) key names back to the live modules
            reloaded = type(model).from_pretrained(checkpoint, dtype=model.dtype)
            model.load_state_dict(reloaded.state_dict())
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)


__all__ = ["HyperSegTrainer", "TaskGroupedSampler", "clip_loss"]
