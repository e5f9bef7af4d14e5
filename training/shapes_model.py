"""A small HyperSeg for the synthetic shapes scenes, to be trained from random initialisation.

    python -m hyperseg.training.shapes_model --output_dir DIR [--seed 0]

writes a randomly initialised model (3.7 M parameters), its byte-level BPE tokenizer (trained here on the prompt
templates and the synthetic texts) and its processor (128-pixel inputs for both image branches), ready for
`python -m hyperseg.training.finetune --model DIR --train_mode full ...`.

    python -m hyperseg.training.shapes_model --export_from TRAINED_DIR --output_dir checkpoints/hyperseg-tiny-shapes

copies a trained folder into the package's `checkpoints/` layout (see [`export_for_package`]).
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..modeling import HyperSegConfig, HyperSegForUniversalSegmentation
from ..processing import HyperSegProcessor
from ..processing.processing_hyperseg import PLACEHOLDER_TOKENS
from ..processing.prompts import TASKS, PooledPrompt, Template, UserText, build_prompt
from .synthetic import SHAPES_CLASS_NAMES, SYNTHETIC_TASKS, synthetic_example

END_OF_TEXT = "<|endoftext|>"
SHAPES_IMAGE_SIZE = 128
SEG_TOKEN = "[SEG]"


def _template_texts() -> list[str]:
    """Every fixed text of the prompts of every task (the words the tokenizer must know)."""
    texts = []
    for task in (task for task in SYNTHETIC_TASKS if task in TASKS):  # instance_by_color rows are "instance" rows
        pieces = build_prompt(task, text="text", class_names=list(SHAPES_CLASS_NAMES) + ["background"], num_regions=2)
        texts.append("".join(piece.text for piece in pieces if isinstance(piece, (Template, UserText, PooledPrompt))))
    return texts


def build_shapes_tokenizer(vocab_size: int = 512, num_texts: int = 2000) -> PreTrainedTokenizerFast:
    """
    A byte-level BPE tokenizer (Phi's scheme, so any text can be encoded) trained on the prompt templates and on
    `num_texts` synthetic expressions, questions and answers; `<|endoftext|>` is bos / eos / unk / pad, and `[SEG]` and
    the placeholder tokens are added as special tokens.
    """
    corpus = _template_texts()
    for index in range(num_texts):
        example = synthetic_example(
            ("referring", "reasoning", "chat", "referring_video")[index % 4], seed=10_000, index=index
        )
        corpus.append(f"{example['text']} {example['answer'] or ''}")
    corpus += list(SHAPES_CLASS_NAMES) + ["background"]

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_TEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
    )
    wrapped.add_tokens([SEG_TOKEN, *PLACEHOLDER_TOKENS.values()], special_tokens=True)
    return wrapped


def token_id_config(tokenizer) -> dict[str, int]:
    """The config's `[SEG]` and placeholder token ids (`seg_token_id`, `image_token_id`, ...) in `tokenizer`."""
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in PLACEHOLDER_TOKENS.items()}
    return {
        "seg_token_id": tokenizer.convert_tokens_to_ids(SEG_TOKEN),
        "image_token_id": ids["image"],
        "temporal_token_id": ids["temporal"],
        "query_token_id": ids["queries"],
        "region_token_id": ids["region"],
    }


def shapes_model_config(tokenizer) -> HyperSegConfig:
    """
    The small architecture: Phi 3 x 128, SigLIP 2 x 96 on 128 px (8 x 8 tokens of 16 px), Swin 32-256 on 128 px, a
    1-layer pixel decoder and 3 decoder layers at width 64, 12 queries, 16 perceiver latents.
    """
    end_of_text = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    return HyperSegConfig(
        text_config=dict(
            model_type="phi",
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            hidden_act="gelu",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
            pad_token_id=end_of_text,
            bos_token_id=end_of_text,
            eos_token_id=end_of_text,
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=96,
            intermediate_size=384,
            num_hidden_layers=3,
            num_attention_heads=4,
            image_size=SHAPES_IMAGE_SIZE,
            patch_size=16,
            vision_use_head=False,
        ),
        backbone_config=dict(
            model_type="swin",
            image_size=SHAPES_IMAGE_SIZE,
            embed_dim=32,
            depths=[2, 2, 2, 2],
            num_heads=[1, 2, 4, 8],
            window_size=4,
            drop_path_rate=0.0,
        ),
        num_queries=12,
        mask_decoder_hidden_size=64,
        mask_decoder_layers=4,
        mask_decoder_attention_heads=4,
        mask_decoder_feedforward_dim=128,
        pixel_decoder_hidden_size=64,
        mask_feature_size=64,
        pixel_decoder_layers=1,
        pixel_decoder_feedforward_dim=128,
        perceiver_num_latents=16,
        perceiver_hidden_size=64,
        perceiver_num_heads=2,
        perceiver_head_dim=32,
        # the class loss teaches the decoder queries to tell shapes apart, which a model trained from scratch learns
        # slowly: weighted 6 instead of HyperSeg's 2 (the SEG and region terms share this weight)
        class_weight=6.0,
        train_num_points=1024,
        region_sample_points=64,
        **token_id_config(tokenizer),
        architectures=["HyperSegForUniversalSegmentation"],
    )


def create_shapes_model(output_dir: str | Path, seed: int = 0) -> HyperSegForUniversalSegmentation:
    """Writes the randomly initialised model (seeded), its tokenizer and processor to `output_dir`."""
    tokenizer = build_shapes_tokenizer()
    config = shapes_model_config(tokenizer)
    processor = HyperSegProcessor.from_model_config(config, tokenizer, seg_token=SEG_TOKEN)
    # prompt-free calls (the image-segmentation pipeline) run panoptic segmentation over the shapes classes
    processor.set_default_vocabulary(config, list(SHAPES_CLASS_NAMES))
    torch.manual_seed(seed)
    model = HyperSegForUniversalSegmentation(config)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return model


PACKAGE_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
REMOTE_CODE_KEYS = ("auto_map", "custom_pipelines")


def export_for_package(trained_dir: str | Path, output_dir: str | Path) -> None:
    """
    Copies the weights, configuration, processor and tokenizer files of `trained_dir` to `output_dir`, without the
    remote-code modules `save_pretrained` copies next to them and without their `auto_map` / `custom_pipelines`
    entries: in the repository the installed package provides the classes (a Hub folder gets them back from
    `hyperseg.conversion.export_hub_folder`).
    """
    trained_dir, output_dir = Path(trained_dir), Path(output_dir)
    missing = [name for name in PACKAGE_FILES if not (trained_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{trained_dir} lacks {missing}: pass the output_dir of a finished training run")
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in PACKAGE_FILES:
        if name.endswith(".json") and name != "tokenizer.json":
            values = json.loads((trained_dir / name).read_text())
            for entry in (values, values.get("image_processor", {})):
                for key in REMOTE_CODE_KEYS:
                    entry.pop(key, None)
            (output_dir / name).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copyfile(trained_dir / name, output_dir / name)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, type=Path, help="where to write the model")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--export_from", type=Path, help="copy this trained folder instead of creating a model")
    args = parser.parse_args(argv)
    if args.export_from is not None:
        export_for_package(args.export_from, args.output_dir)
        print(f"exported {args.export_from} -> {args.output_dir}")
        return
    model = create_shapes_model(args.output_dir, args.seed)
    print(f"wrote a randomly initialised HyperSeg ({model.num_parameters():,} parameters) to {args.output_dir}")


if __name__ == "__main__":
    main()
