"""Segment an image from a text prompt and write an overlay picture.

    python -m hyperseg.processing.segment [--image IMAGE] [--prompt TEXT] [--model PATH] [--output overlay.png]

Without `--image` the sample image shipped with the package is used (`samples/scene.png`: held-out synthetic scene 5
of seed 1, see `hyperseg.training.synthetic`); without `--model` the project's default model, the tiny HyperSeg trained
from scratch on synthetic shapes (`checkpoints/hyperseg-tiny-shapes`). A model folder without weights (such as
`hyperseg-tiny-random`, a bare config) is built from its config with a fixed seed and says so: its masks are
meaningless.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..modeling import HyperSegForUniversalSegmentation
from .processing_hyperseg import HyperSegProcessor

SAMPLE_IMAGE = Path(__file__).parent / "samples" / "scene.png"
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
DEFAULT_MODEL = CHECKPOINTS / "hyperseg-tiny-shapes"
DEFAULT_PROMPT = "the yellow square right of the yellow triangle"
OVERLAY_COLOR = np.array([255, 40, 200], dtype=np.float32)


def load_model(path: Path) -> tuple[HyperSegForUniversalSegmentation, bool]:
    """The model in `path`; a folder with only a config gives a seeded random model. Returns (model, is_random)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path} is not a model folder (no config.json)")
    if any(path.glob("*.safetensors")):
        return HyperSegForUniversalSegmentation.from_pretrained(path).eval(), False
    torch.manual_seed(0)
    config = HyperSegForUniversalSegmentation.config_class.from_pretrained(path)
    return HyperSegForUniversalSegmentation(config).eval(), True


def overlay(image: Image.Image, mask: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The image with `mask` blended in a bright colour and its outline drawn fully opaque."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    pixels[mask] = (1 - alpha) * pixels[mask] + alpha * OVERLAY_COLOR
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    pixels[mask & ~inner] = OVERLAY_COLOR
    return Image.fromarray(pixels.round().astype(np.uint8))


def segment(image_path: Path, prompt: str, model_path: Path, output: Path, task: str = "referring") -> dict:
    """
    Segments `image_path` from `prompt`, writes the overlay PNG to `output` and returns `mask` (bool `(height,
    width)` array), `score`, `mask_pixels` and `random_weights`.
    """
    image = Image.open(image_path).convert("RGB")
    model, is_random = load_model(model_path)
    processor = HyperSegProcessor.from_pretrained(model_path)
    inputs = processor(images=image, text=prompt, task=task, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_referring_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
    mask = result["mask"].numpy()
    overlay(image, mask).save(output)
    return {"mask": mask, "score": result["score"], "mask_pixels": int(mask.sum()), "random_weights": is_random}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=SAMPLE_IMAGE, help="image to segment (default: shipped sample)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="referring expression (default: %(default)r)")
    parser.add_argument("--task", default="referring", choices=["referring", "reasoning"])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("overlay.png"), help="overlay PNG to write")
    args = parser.parse_args(argv)
    summary = segment(args.image, args.prompt, args.model, args.output, args.task)
    if summary["random_weights"]:
        print(
            f"NOTE: {args.model} has no trained weights; this is a randomly initialised tiny model (seed 0), "
            "so the mask below shows the pipeline working, not a meaningful segmentation."
        )
    print(
        f"prompt: {args.prompt!r}\nscore: {summary['score']:.4f}\nmask pixels: {summary['mask_pixels']}\n"
        f"overlay written to {args.output}"
    )


if __name__ == "__main__":
    main()
