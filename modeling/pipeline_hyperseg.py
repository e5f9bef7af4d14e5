"""
`HyperSegSegmentationPipeline`: transformers' `image-segmentation` pipeline for HyperSeg, prompted with a referring
expression, class names or visual prompts.

Saved HyperSeg folders register it as their `image-segmentation` pipeline (`custom_pipelines` in `config.json`), so
`pipeline("image-segmentation", model=folder_or_repo, trust_remote_code=True)` returns it.
"""

from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers import Pipeline
from transformers.image_utils import load_image
from transformers.utils import ModelOutput

# visual-prompt argument -> the key of one prompt in `HyperSegProcessor(visual_prompts=...)`
VISUAL_PROMPT_KINDS = {"boxes": "box", "points": "point", "scribbles": "scribble", "masks": "mask"}
# nesting depth of ONE prompt of each kind: a box / point is a list of numbers, a scribble a list of points, a mask 2-D
VISUAL_PROMPT_DEPTHS = {"boxes": 1, "points": 1, "scribbles": 2, "masks": 2}
PROMPT_ARGUMENTS = ("prompt", "class_names", *VISUAL_PROMPT_KINDS)
CLASS_SUBTASKS = ("panoptic", "instance", "semantic")
TEXT_SUBTASKS = ("referring", "reasoning")
LOGITS_NAMES = ("masks_queries_logits", "seg_queries_logits", "class_queries_logits", "region_queries_logits")


def _nesting_depth(value: Any) -> int:
    """0 for a number, else 1 + the depth of the first element (arrays and images count their dimensions)."""
    if isinstance(value, PIL.Image.Image):
        return 2
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim
    if isinstance(value, (list, tuple)):
        return 1 + (_nesting_depth(value[0]) if len(value) else 0)
    return 0


def _visual_prompts(argument: str, value: Any) -> list:
    """One visual prompt, or a list of them, as a list."""
    depth = _nesting_depth(value)
    if depth == VISUAL_PROMPT_DEPTHS[argument]:
        return [value]
    if depth == VISUAL_PROMPT_DEPTHS[argument] + 1 and len(value) > 0:
        return list(value)
    one = {"boxes": "[x0, y0, x1, y1]", "points": "[x, y]", "scribbles": "[[x, y], ...]", "masks": "a 2-D array"}
    raise ValueError(
        f"`{argument}` must be one {VISUAL_PROMPT_KINDS[argument]} {one[argument]} or a non-empty list of them"
    )


def _to_pil_mask(mask: torch.Tensor) -> PIL.Image.Image:
    """A boolean (height, width) mask as the pipeline's black-and-white PIL image (mode "L", 0 / 255)."""
    return PIL.Image.fromarray(mask.numpy().astype(np.uint8) * 255)


class HyperSegSegmentationPipeline(Pipeline):
    r"""
    Image segmentation with every image prompt HyperSeg understands. One call uses one kind of prompt:

    - none: panoptic segmentation over the model's default vocabulary (`config.id2label`), exactly like
      transformers' [`ImageSegmentationPipeline`] (`subtask="instance"` or `"semantic"` changes only the
      post-processing, as there);
    - `class_names=[...]`: open-vocabulary `subtask="panoptic"` (default), `"instance"` or `"semantic"` segmentation,
      the prompt worded for that subtask;
    - `prompt="..."`: the one object a referring expression (`subtask="referring"`, default) or a reasoning question
      (`subtask="reasoning"`) describes;
    - `boxes=`, `points=`, `scribbles=`, `masks=` (they can be combined): one object per visual prompt, in the order
      boxes, points, scribbles, masks.

    Each result is a list of `{"score", "label", "mask"}` dicts: `mask` is a mode-"L" PIL image (0 / 255) of the
    input's size; `label` is the class name, the prompt text, or the visual prompt (`"box 0"`, `"point 1"`, ...);
    `score` is `None` for semantic segmentation. A batch of images takes per-image prompts as dicts:
    `pipe([{"image": a, "prompt": "the dog"}, {"image": b, "prompt": "the cat"}], batch_size=2)`; the images of one
    model batch must share the kind of prompt (and, for visual prompts, their number).

    Example:

    ```python
    >>> from transformers import pipeline

    >>> segmenter = pipeline("image-segmentation", model="path/to/hyperseg", trust_remote_code=True)
    >>> segmenter(image)  # panoptic over config.id2label
    >>> segmenter(image, prompt="the dog on the left")
    >>> segmenter(image, class_names=["dog", "grass"], subtask="semantic")
    >>> segmenter(image, boxes=[[10, 20, 200, 240]], points=[[320, 100]])
    ```
    """

    _load_processor = True
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(
        self,
        subtask: str | None = None,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        overlap_mask_area_threshold: float | None = None,
        timeout: float | None = None,
        **prompts,
    ):
        unknown = sorted(set(prompts) - set(PROMPT_ARGUMENTS))
        if unknown:
            raise TypeError(f"unexpected argument(s) {unknown}; the prompts are {', '.join(PROMPT_ARGUMENTS)}")
        preprocess_kwargs = {key: value for key, value in prompts.items() if value is not None}
        if subtask is not None:
            preprocess_kwargs["subtask"] = subtask
        if timeout is not None:
            preprocess_kwargs["timeout"] = timeout
        postprocess_kwargs = {
            key: value
            for key, value in (
                ("threshold", threshold),
                ("mask_threshold", mask_threshold),
                ("overlap_mask_area_threshold", overlap_mask_area_threshold),
            )
            if value is not None
        }
        return preprocess_kwargs, {}, postprocess_kwargs

    def __call__(self, inputs=None, **kwargs):
        r"""
        Segments the image(s) in `inputs`.

        Args:
            inputs (`str`, `PIL.Image.Image`, `dict`, or a list of them):
                An image (a PIL image, a local path or an http(s) URL), or a dict `{"image": ..., <prompt>: ...}`
                whose prompt arguments (below) apply to that image only. A list gives a list of results.
            prompt (`str`, *optional*):
                A referring expression or a reasoning question.
            class_names (`list[str]`, *optional*):
                The vocabulary of panoptic / instance / semantic segmentation.
            boxes (`list[float]` or `list[list[float]]`, *optional*):
                Box prompt(s) `[x0, y0, x1, y1]` in pixels.
            points (`list[float]` or `list[list[float]]`, *optional*):
                Point prompt(s) `[x, y]` in pixels.
            scribbles (`list[list[float]]` or a list of them, *optional*):
                Scribble prompt(s), each a polyline `[[x, y], ...]` in pixels.
            masks (2-D array or a list of them, *optional*):
                Mask prompt(s) of the image's `(height, width)`, non-zero = the region.
            subtask (`str`, *optional*):
                `"panoptic"` (default), `"instance"` or `"semantic"` without a prompt or with `class_names`;
                `"referring"` (default) or `"reasoning"` with `prompt`.
            threshold (`float`, *optional*, defaults to 0.9):
                Class probability below which panoptic / instance segments are dropped.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Mask probability from which a pixel belongs to a panoptic / instance segment.
            overlap_mask_area_threshold (`float`, *optional*, defaults to 0.5):
                Minimum share of its mask a panoptic segment must keep after overlaps are resolved.
            timeout (`float`, *optional*):
                Seconds to wait for an image URL.

        Returns:
            `list[dict]` per image (a list of them for a list of inputs), each dict with `score`, `label` and `mask`.
        """
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise ValueError("HyperSegSegmentationPipeline needs an image (or a list of images) to segment")
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs, subtask: str | None = None, timeout: float | None = None, **prompts) -> dict:
        if isinstance(inputs, dict):
            unknown = sorted(set(inputs) - {"image", *PROMPT_ARGUMENTS})
            if "image" not in inputs or unknown:
                raise ValueError(
                    f"an input dict needs the key 'image' and may have the prompt keys {', '.join(PROMPT_ARGUMENTS)}; "
                    f"got {sorted(inputs)}"
                )
            prompts = {
                **prompts,
                **{key: value for key, value in inputs.items() if key != "image" and value is not None},
            }
            inputs = inputs["image"]
        image = load_image(inputs, timeout=timeout)
        sample = {"image": image, "target_size": (image.height, image.width), **self._task(prompts, subtask)}
        return {"sample": sample}

    def _task(self, prompts: dict[str, Any], subtask: str | None) -> dict[str, Any]:
        """The processor task, its arguments and the result labels of one image's prompts."""
        visual = [argument for argument in VISUAL_PROMPT_KINDS if argument in prompts]
        kinds = ["prompt"] * ("prompt" in prompts) + ["class_names"] * ("class_names" in prompts) + visual
        if len(set(kinds) - set(visual)) + bool(visual) > 1:
            raise ValueError(
                f"got prompts of several kinds ({', '.join(kinds)}); one call segments with ONE kind: a text "
                "`prompt`, `class_names`, or visual prompts (`boxes`, `points`, `scribbles`, `masks`, which combine)"
            )
        if "prompt" in prompts:
            if subtask not in (None, *TEXT_SUBTASKS):
                raise ValueError(f"a text prompt takes subtask 'referring' or 'reasoning', got {subtask!r}")
            text = prompts["prompt"]
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"`prompt` must be a non-empty string, got {text!r}")
            return {"task": subtask or "referring", "text": text, "labels": [text]}
        if visual:
            if subtask not in (None, "interactive"):
                raise ValueError(f"visual prompts take no subtask (or 'interactive'), got {subtask!r}")
            visual_prompts, labels = [], []
            for argument in visual:
                kind = VISUAL_PROMPT_KINDS[argument]
                for index, value in enumerate(_visual_prompts(argument, prompts[argument])):
                    value = np.asarray(value) if isinstance(value, PIL.Image.Image) else value
                    visual_prompts.append({kind: value})
                    labels.append(f"{kind} {index}")
            return {"task": "interactive", "visual_prompts": visual_prompts, "labels": labels}
        if subtask not in (None, *CLASS_SUBTASKS):
            raise ValueError(
                f"subtask must be one of {', '.join(CLASS_SUBTASKS)} without a prompt or with `class_names` "
                f"(or {', '.join(TEXT_SUBTASKS)} with a text `prompt`), got {subtask!r}"
            )
        if "class_names" not in prompts:
            # the model's default prompt, exactly as transformers' image-segmentation pipeline runs it
            return {"task": None, "subtask": subtask or "panoptic"}
        class_names = prompts["class_names"]
        if isinstance(class_names, str):
            raise ValueError(f"`class_names` must be a list of names, got the string {class_names!r}")
        return {"task": subtask or "panoptic", "subtask": subtask or "panoptic", "class_names": list(class_names)}

    def _forward(self, model_inputs: dict) -> ModelOutput:
        # one sample dict; a list of them when the pipeline's DataLoader batched several images
        samples = model_inputs["sample"]
        batch = samples if isinstance(samples, list) else [samples]
        task = batch[0]["task"]
        if any(sample["task"] != task for sample in batch):
            raise ValueError(
                f"one batch mixes the tasks {sorted({str(sample['task']) for sample in batch})}; give the images of a "
                "batch the same kind of prompt, or use batch_size=1"
            )
        images = [sample["image"] for sample in batch]
        if task is None:
            inputs = self.image_processor(images=images, return_tensors="pt")
        elif self.processor is None:
            raise ValueError("prompted segmentation needs the HyperSegProcessor (pass `processor=` to the pipeline)")
        elif task == "interactive":
            counts = [len(sample["visual_prompts"]) for sample in batch]
            if len(set(counts)) > 1:
                raise ValueError(
                    f"the images of one batch have {counts} visual prompts; the model needs the same number for "
                    "every image of a batch (use batch_size=1)"
                )
            inputs = self.processor(images=images, task=task, visual_prompts=[s["visual_prompts"] for s in batch])
        elif task in TEXT_SUBTASKS:
            inputs = self.processor(images=images, task=task, text=[sample["text"] for sample in batch])
        else:
            inputs = self.processor(images=images, task=task, class_names=[sample["class_names"] for sample in batch])
        inputs = self._ensure_tensor_on_device(inputs.to(self.dtype), self.device)
        outputs = self.model(**inputs)
        logits = {name: outputs[name] for name in LOGITS_NAMES if outputs.get(name) is not None}
        return ModelOutput({**logits, "sample": samples})

    def postprocess(
        self,
        model_outputs: ModelOutput,
        threshold: float = 0.9,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.5,
    ) -> list[dict[str, Any]]:
        sample = model_outputs["sample"]
        target_sizes = [sample["target_size"]]
        image_processor = self.image_processor
        if sample["task"] in TEXT_SUBTASKS:
            result = image_processor.post_process_referring_segmentation(model_outputs, target_sizes=target_sizes)[0]
            return [{"score": result["score"], "label": sample["labels"][0], "mask": _to_pil_mask(result["mask"])}]
        if sample["task"] == "interactive":
            results = image_processor.post_process_interactive_segmentation(model_outputs, target_sizes=target_sizes)[
                0
            ]
            return [
                {"score": result["score"], "label": label, "mask": _to_pil_mask(result["mask"])}
                for label, result in zip(sample["labels"], results)
            ]

        class_names = sample.get("class_names") or [
            self.model.config.id2label[index] for index in range(len(self.model.config.id2label))
        ]
        if sample["subtask"] == "semantic":
            segmentation = image_processor.post_process_semantic_segmentation(
                model_outputs, target_sizes=target_sizes
            )[0]
            return [
                {"score": None, "label": class_names[label], "mask": _to_pil_mask(segmentation == label)}
                for label in segmentation.unique().tolist()
            ]
        post_process = getattr(image_processor, f"post_process_{sample['subtask']}_segmentation")
        result = post_process(
            model_outputs,
            threshold=threshold,
            mask_threshold=mask_threshold,
            overlap_mask_area_threshold=overlap_mask_area_threshold,
            target_sizes=target_sizes,
        )[0]
        return [
            {
                "score": segment["score"],
                "label": class_names[segment["label_id"]],
                "mask": _to_pil_mask(result["segmentation"] == segment["id"]),
            }
            for segment in result["segments_info"]
        ]


__all__ = ["HyperSegSegmentationPipeline"]
