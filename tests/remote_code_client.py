"""
Loads a HyperSeg folder or Hub repo id through transformers' entry points and records what each computes; used by
`test_hub_remote_code.py`, both in the test process (the `hyperseg` package, native classes) and as a script in a
Python where `hyperseg` is not importable (remote code, `trust_remote_code=True`). It imports transformers only.

    python remote_code_client.py OUTPUT_FILE IMAGE_FILE SOURCE [SOURCE ...] [--resave DIR] [--snippets FILE ...]

Each SOURCE (a folder or a repo id) is recorded under its own key; `--resave` saves the objects loaded from the first
SOURCE to DIR (as a user of the remote code would) and records DIR too; `--snippets` runs the ```python blocks of
each Markdown file.
"""

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForUniversalSegmentation,
    AutoProcessor,
    pipeline,
)

MODEL_AUTO_CLASSES = (AutoModelForUniversalSegmentation, AutoModel, AutoModelForImageSegmentation)
VISUAL_PROMPTS = [{"box": [4, 6, 40, 30]}, {"point": [50, 20]}, {"scribble": [[10, 40], [30, 44], [60, 42]]}]
PIPELINE_CALLS = {
    "default_panoptic": {"threshold": 0.0},
    "classes_semantic": {"class_names": ["dog", "grass"], "subtask": "semantic"},
    "referring": {"prompt": "the dog on the left"},
    "visual": {"boxes": [[4, 6, 40, 30]], "points": [[50, 20]]},
}
# the prompt head (`config.prompt_heads`) each model call and pipeline call needs (pixels only: the default prompt,
# panoptic over id2label): a model without it (InstructSeg has the `seg` head only) rejects that kind of prompt, so
# neither the package nor the remote code records it
TASK_HEADS = {"referring": "seg", "panoptic": "class", "interactive": "region", "pixels_only": "class"}
PIPELINE_CALL_HEADS = {
    "default_panoptic": "class",
    "classes_semantic": "class",
    "referring": "seg",
    "visual": "region",
}


def load(source: str, trust_remote_code: bool | None, pipeline_class=None) -> dict:
    """Every object a user loads from `source`, by its entry point."""
    kwargs = {"trust_remote_code": trust_remote_code}
    objects = {cls.__name__: cls.from_pretrained(source, **kwargs) for cls in MODEL_AUTO_CLASSES}
    objects["AutoProcessor"] = AutoProcessor.from_pretrained(source, **kwargs)
    objects["AutoImageProcessor"] = AutoImageProcessor.from_pretrained(source, **kwargs)
    objects["pipeline"] = pipeline("image-segmentation", model=source, pipeline_class=pipeline_class, **kwargs)
    return objects


def record(objects: dict, image: Image.Image) -> dict:
    """The tensors every loaded object computes on `image`, by name (model outputs for the model's heads only)."""
    processor, image_processor = objects["AutoProcessor"], objects["AutoImageProcessor"]
    heads = set(objects["AutoModelForUniversalSegmentation"].config.prompt_heads)
    inputs = {
        "referring": processor(images=image, text="the dog on the left", task="referring"),
        "panoptic": processor(images=image, task="panoptic", class_names=["dog", "grass"]),
        "interactive": processor(images=image, task="interactive", visual_prompts=VISUAL_PROMPTS),
        "pixels_only": image_processor(images=image, return_tensors="pt"),
    }
    records = {}
    for task, task_inputs in inputs.items():
        for key, value in task_inputs.items():
            records[f"inputs/{task}/{key}"] = torch.stack(value) if isinstance(value, list) else value
    for task, task_inputs in inputs.items():
        if TASK_HEADS[task] not in heads:
            continue
        with torch.no_grad():
            outputs = objects["AutoModelForUniversalSegmentation"](**task_inputs)
        for key in ("masks_queries_logits", "seg_queries_logits", "class_queries_logits", "region_queries_logits"):
            if outputs.get(key) is not None:
                records[f"model/{task}/{key}"] = outputs[key]
    # the other entry points give the same class (checked by the caller); equal weights then mean equal outputs
    for cls in MODEL_AUTO_CLASSES[1:]:
        for key, tensor in objects[cls.__name__].state_dict().items():
            records[f"{cls.__name__}/state_dict/{key}"] = tensor
    for call, kwargs in PIPELINE_CALLS.items():
        if PIPELINE_CALL_HEADS[call] not in heads:
            continue
        for index, result in enumerate(objects["pipeline"](image, **kwargs)):
            records[f"pipeline/{call}/{index}/mask"] = torch.from_numpy(np.array(result["mask"]))
            records[f"pipeline/{call}/{index}/label_and_score"] = (result["label"], result["score"])
    return records


def run_snippets(markdown_file: Path) -> None:
    """Executes every ```python block of a Markdown file, in order, in one namespace."""
    blocks = re.findall(r"```python\n(.*?)```", markdown_file.read_text(), flags=re.DOTALL)
    if not blocks:
        raise ValueError(f"{markdown_file} has no ```python block")
    namespace = {"__name__": "__snippets__"}
    for block in blocks:
        exec(compile(block, str(markdown_file), "exec"), namespace)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_file", type=Path)
    parser.add_argument("image_file", type=Path)
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--resave", type=Path)
    parser.add_argument("--snippets", type=Path, nargs="+", default=[])
    args = parser.parse_args()
    if importlib.util.find_spec("hyperseg") is not None:
        raise RuntimeError("this run must not see the hyperseg package")

    image = Image.open(args.image_file)
    results = {"classes": {}, "records": {}}

    def load_and_record(source: str) -> dict:
        objects = load(source, trust_remote_code=True)
        results["classes"][source] = {
            name: f"{type(obj).__module__}.{type(obj).__name__}" for name, obj in objects.items()
        }
        results["records"][source] = record(objects, image)
        return objects

    first = load_and_record(args.sources[0])
    for source in args.sources[1:]:
        load_and_record(source)
    if args.resave is not None:
        first["AutoModelForUniversalSegmentation"].save_pretrained(args.resave)
        first["AutoProcessor"].save_pretrained(args.resave)
        load_and_record(str(args.resave))
    for markdown_file in args.snippets:
        run_snippets(markdown_file)
    torch.save(results, args.output_file)


if __name__ == "__main__":
    main()
