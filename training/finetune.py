"""Fine-tune HyperSeg with `Trainer`.

    python -m hyperseg.training.finetune --model PATH --dataset DATASET --output_dir OUT [Trainer options]

`DATASET` is `synthetic` (procedural shapes, see `hyperseg.training.synthetic`; `--synthetic_tasks`,
`--synthetic_samples`, `--synthetic_seed`, `--synthetic_duplicate_probability`), a folder written by
`Dataset.save_to_disk`, or a dataset name for `datasets.load_dataset`, in the schema of `hyperseg.training.data`.
Every `TrainingArguments` option works (`--num_train_epochs`, `--per_device_train_batch_size`, `--learning_rate`,
`--resume_from_checkpoint`, ...).

Defaults follow the original recipe: LoRA r=8, alpha=16 on the LLM's q / v projections, the new modules trained
fully, SigLIP / Swin / projector frozen (`--train_mode full` trains everything), activation checkpointing, bf16 on
GPUs that support it. Under LoRA, OUT receives the merged model (loadable with `from_pretrained`) and OUT/adapter
the adapter. Several processes: `accelerate launch --multi_gpu --num_processes 2 -m hyperseg.training.finetune ...`
(on CPU too: `--multi_gpu` is what starts the processes; accelerate's `--cpu` alone starts one).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser, TrainingArguments, set_seed

from ..modeling import HyperSegForUniversalSegmentation
from ..processing import HyperSegProcessor
from .data import HyperSegDataCollator, validate_example
from .recipe import TRAIN_MODES, prepare_for_training, save_adapter
from .synthetic import DUPLICATE_PROBABILITY, synthetic_dataset
from .trainer import HyperSegTrainer

logger = logging.getLogger(__name__)


@dataclass
class FinetuneArguments:
    model: str = field(metadata={"help": "HyperSeg folder or hub id (model and processor)"})
    dataset: str = field(
        metadata={"help": "`synthetic`, a `Dataset.save_to_disk` folder, or a `datasets.load_dataset` name"}
    )
    dataset_split: str = field(default="train", metadata={"help": "split of a DatasetDict / hub dataset"})
    synthetic_tasks: str = field(
        default="referring,panoptic",
        metadata={"help": "comma-separated tasks of the synthetic rows, cycled (repeat a task to weight it)"},
    )
    synthetic_samples: int = field(default=2000, metadata={"help": "number of synthetic rows"})
    synthetic_seed: int = field(default=0, metadata={"help": "seed of the synthetic rows"})
    synthetic_image_size: int = field(default=128, metadata={"help": "side of the synthetic images"})
    synthetic_duplicate_probability: float = field(
        default=DUPLICATE_PROBABILITY,
        metadata={"help": "share of synthetic scenes with two look-alike shapes (referring by position)"},
    )
    train_mode: str = field(default="lora", metadata={"help": f"one of {', '.join(TRAIN_MODES)}"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    merge_adapter: bool = field(default=True, metadata={"help": "LoRA: also save the merged model to output_dir"})
    max_visual_prompts: int | None = field(default=None, metadata={"help": "cap on prompts per interactive sample"})
    check_data: bool = field(default=True, metadata={"help": "validate every row before training"})


@dataclass
class HyperSegTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults HyperSeg training needs."""

    # the collator reads the raw columns (images, segment maps, prompts)
    remove_unused_columns: bool = field(default=False, metadata={"help": "keep the raw columns for the collator"})
    activation_checkpointing: bool | None = field(default=True, metadata={"help": "recompute activations in backward"})
    bf16: bool = field(
        default_factory=lambda: torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        metadata={"help": "bf16 mixed precision (default: on GPUs that support it)"},
    )
    # referring, class-name and region heads are used by different tasks
    ddp_find_unused_parameters: bool | None = field(default=True, metadata={"help": "see TrainingArguments"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW peak learning rate"})
    logging_steps: float = field(default=10, metadata={"help": "log every N steps"})


def load_training_dataset(args: FinetuneArguments) -> datasets.Dataset:
    """The training rows of `args.dataset`, with an `index` column for error messages."""
    if args.dataset == "synthetic":
        tasks = [task.strip() for task in args.synthetic_tasks.split(",") if task.strip()]
        size = args.synthetic_image_size
        dataset = synthetic_dataset(
            args.synthetic_samples,
            seed=args.synthetic_seed,
            tasks=tasks,
            height=size,
            width=size,
            duplicate_probability=args.synthetic_duplicate_probability,
        )
    elif Path(args.dataset).exists():
        dataset = datasets.load_from_disk(args.dataset)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[args.dataset_split]
    else:
        dataset = datasets.load_dataset(args.dataset, split=args.dataset_split)
    if "task" not in dataset.column_names:
        raise ValueError(
            f"the dataset {args.dataset!r} has no `task` column; see hyperseg.training.data for the schema"
        )
    if "index" not in dataset.column_names:
        dataset = dataset.add_column("index", list(range(len(dataset))))
    return dataset


def check_dataset(dataset: datasets.Dataset) -> None:
    """Validates every row (see `validate_example`), so that bad data fails before the first step."""
    for position, example in enumerate(tqdm(dataset, desc="checking training data")):
        validate_example(example, example.get("index", position))


def main(argv=None) -> HyperSegTrainer:
    parser = HfArgumentParser((FinetuneArguments, HyperSegTrainingArguments))
    args, training_args = parser.parse_args_into_dataclasses(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_seed(training_args.seed)

    processor = HyperSegProcessor.from_pretrained(args.model)
    model = HyperSegForUniversalSegmentation.from_pretrained(args.model)
    train_dataset = load_training_dataset(args)
    if args.check_data:
        check_dataset(train_dataset)
    model = prepare_for_training(model, args.train_mode, args.lora_r, args.lora_alpha, args.lora_dropout)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        f"training {trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters ({args.train_mode})"
    )

    trainer = HyperSegTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=HyperSegDataCollator(processor, max_visual_prompts=args.max_visual_prompts),
        processing_class=processor,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    output_dir = Path(training_args.output_dir)
    if args.train_mode == "full":
        trainer.save_model(str(output_dir))
    elif trainer.is_world_process_zero():
        save_adapter(trainer.model, output_dir / "adapter")
        if args.merge_adapter:
            trainer.model.merge_and_unload().save_pretrained(output_dir)
            processor.save_pretrained(output_dir)
    return trainer


if __name__ == "__main__":
    main()
