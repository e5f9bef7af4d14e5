"""Training data for HyperSeg: the dataset schema, its validation, and the collator that builds training batches.

One row is one sample of one task. Columns (unused ones may be `None` / empty):

| column | type | used by |
|---|---|---|
| `task` | string | every row: `referring`, `reasoning`, `panoptic`, `instance`, `semantic`, `interactive`, `referring_video`, `reasoning_video` or `chat` |
| `image` | image | every image task (any PIL mode, or an HWC / HW array) |
| `segmentation` | image | segmentation tasks: segment-id map of the image's size, 0 = void (PNG mode "L" or "I") |
| `frames`, `segmentations` | list of images | video tasks: consecutive frames and their segment-id maps (ids shared across frames) |
| `segments` | list of `{"id", "category_id", "isthing"}` | segmentation tasks: the segments of the maps |
| `class_names` | list of strings | panoptic / instance / semantic: `category_id` indexes it |
| `text` | string | referring / reasoning expression (also video), chat question |
| `target_ids` | list of ints | referring / reasoning: the segment ids the expression refers to (the target is their union) |
| `answer` | string | chat: the answer the language-model loss is computed on |
| `index` | int | optional: the row's position, named in error messages (added by the fine-tuning script) |

Training samples per task (built by [`HyperSegDataCollator`]):

- referring / reasoning: one target mask, the union of `target_ids` (empty when none is visible);
- panoptic: every segment with its class; instance: only things; semantic: one mask per class present. The class
  names are shuffled per sample (as PSALM trains) and the labels follow the shuffle;
- interactive: one visual prompt per segment, derived from its ground-truth mask with a random kind (a point inside
  it, its box, a scribble through it, or the mask itself); target k is the mask of prompt k;
- referring_video / reasoning_video: `video_frames`, one batch per frame; the trainer runs them in order and carries
  `temporal_latents` from one frame to the next;
- chat: the answer and `<|endoftext|>` appended to the processor's prompt, `labels` = -100 except on them.
"""

from collections.abc import Mapping, Sequence

import datasets
import numpy as np
import torch
from PIL import Image
from transformers.image_utils import get_image_size, infer_channel_dimension_format

from ..processing.image_processing_hyperseg import VISUAL_PROMPT_KEYS, get_resized_size
from ..processing.processing_hyperseg import CLASS_TASKS
from ..processing.prompts import TASKS, VIDEO_TASKS

REFERRING_TASKS = ("referring", "reasoning") + VIDEO_TASKS
TEXT_TASKS = REFERRING_TASKS + ("chat",)
IGNORE_INDEX = -100

_SEGMENT = {"id": datasets.Value("int32"), "category_id": datasets.Value("int32"), "isthing": datasets.Value("bool")}
TRAINING_FEATURES = datasets.Features(
    {
        "index": datasets.Value("int64"),
        "task": datasets.Value("string"),
        "image": datasets.Image(),
        "segmentation": datasets.Image(),
        "frames": datasets.List(datasets.Image()),
        "segmentations": datasets.List(datasets.Image()),
        "segments": datasets.List(_SEGMENT),
        "class_names": datasets.List(datasets.Value("string")),
        "text": datasets.Value("string"),
        "target_ids": datasets.List(datasets.Value("int32")),
        "answer": datasets.Value("string"),
    }
)


def _image_size(image) -> tuple[int, int]:
    """(height, width) of a PIL image or an HW / HWC / CHW array."""
    if isinstance(image, Image.Image):
        return image.height, image.width
    array = np.asarray(image)
    if array.ndim == 2:
        return array.shape
    return get_image_size(array, infer_channel_dimension_format(array, num_channels=(1, 3, 4)))


def _frames(example: Mapping) -> tuple[list, list]:
    """The images of a row and their segment-id maps (one each for image tasks, one per frame for video)."""
    if example["task"] in VIDEO_TASKS:
        return list(example.get("frames") or []), list(example.get("segmentations") or [])
    segmentation = example.get("segmentation")
    return [example.get("image")], [segmentation] if segmentation is not None else []


def validate_example(example: Mapping, index: int) -> None:
    """
    Raises a ValueError naming `sample {index}` when a row cannot make a correct training sample: an unknown task,
    a missing image, non-finite pixels, an empty prompt or answer, a segment-id map whose size differs from its
    image, segments listed twice or with id 0, a class id outside `class_names`, a target id that is not a segment,
    or an interactive sample without any object to prompt.
    """
    where = f"sample {index}"
    task = example.get("task")
    if task not in TASKS:
        raise ValueError(f"{where}: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    images, maps = _frames(example)
    if not images or any(image is None for image in images):
        column = "frames" if task in VIDEO_TASKS else "image"
        raise ValueError(f"{where}: task {task!r} needs the `{column}` column")
    for frame, image in enumerate(images):
        array = np.asarray(image)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise ValueError(
                f"{where}: image{f' (frame {frame})' if len(images) > 1 else ''} has NaN or infinite pixels"
            )
    if task in TEXT_TASKS and not (isinstance(example.get("text"), str) and example["text"].strip()):
        raise ValueError(f"{where}: task {task!r} needs a non-empty `text` prompt, got {example.get('text')!r}")
    if task == "chat":
        if not (isinstance(example.get("answer"), str) and example["answer"].strip()):
            raise ValueError(f"{where}: a chat sample needs a non-empty `answer`, got {example.get('answer')!r}")
        return

    if len(maps) != len(images):
        raise ValueError(f"{where}: got {len(maps)} segmentation map(s) for {len(images)} image(s)")
    for frame, (image, segmentation) in enumerate(zip(images, maps)):
        image_size, map_size = _image_size(image), np.asarray(segmentation).shape
        if tuple(map_size) != tuple(image_size):
            raise ValueError(
                f"{where}: the segmentation map{f' of frame {frame}' if len(images) > 1 else ''} has size {map_size} "
                f"but the image has size {image_size} (height, width)"
            )
    segments = example.get("segments") or []
    ids = [int(segment["id"]) for segment in segments]
    if len(set(ids)) != len(ids) or 0 in ids:
        raise ValueError(f"{where}: segment ids must be unique and non-zero (0 is void), got {ids}")
    if task in CLASS_TASKS:
        class_names = example.get("class_names") or []
        if not class_names:
            raise ValueError(f"{where}: task {task!r} needs a non-empty `class_names` list")
        for segment in segments:
            if not 0 <= int(segment["category_id"]) < len(class_names):
                raise ValueError(
                    f"{where}: segment {segment['id']} has class id {segment['category_id']}, outside the "
                    f"{len(class_names)} class names [0, {len(class_names) - 1}]"
                )
    if task in REFERRING_TASKS:
        unknown = sorted(set(example.get("target_ids") or []) - set(ids))
        if unknown:
            raise ValueError(f"{where}: `target_ids` {unknown} are not ids of `segments` ({ids})")
    if task == "interactive" and not set(np.unique(np.asarray(maps[0])).tolist()) & set(ids):
        raise ValueError(f"{where}: an interactive sample needs at least one segment in its map to prompt")


def visual_prompt_from_mask(mask: np.ndarray, kind: str, rng: np.random.Generator) -> dict:
    """
    A visual prompt of `kind` derived from a ground-truth `(height, width)` mask, in the processor's format:
    a random pixel of the mask (`point`), its tight box (`box`), a polyline through 3 random pixels of it sorted
    left to right (`scribble`), or the mask itself (`mask`).
    """
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("cannot derive a visual prompt from an empty mask")
    if kind == "point":
        pick = rng.integers(len(ys))
        return {"point": [int(xs[pick]), int(ys[pick])]}
    if kind == "box":
        return {"box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]}
    if kind == "scribble":
        picks = rng.integers(len(ys), size=3)
        return {"scribble": sorted([int(xs[p]), int(ys[p])] for p in picks)}
    if kind == "mask":
        return {"mask": mask.astype(np.uint8)}
    raise ValueError(f"unknown visual prompt kind {kind!r}; expected one of {', '.join(VISUAL_PROMPT_KEYS)}")


class HyperSegDataCollator:
    r"""
    Turns rows of the training schema (see the module docstring) into a batch for
    [`HyperSegForUniversalSegmentation`]: the processor's inputs plus `mask_labels` (per sample, `(num_targets,
    backbone_size, backbone_size)` uint8 masks resized and padded like `backbone_pixel_values`), `class_labels`
    (class tasks) or `labels` (chat). Every row is validated first ([`validate_example`]), so bad data fails here,
    before the training step, with the row's `index`.

    All rows of a batch must have the same task (the model scores one kind of prompt per batch); `HyperSegTrainer`
    batches rows by task. The random choices of a row (class order, prompt kinds and positions) come from a generator
    seeded with `(seed, epoch, index)`, so they depend neither on the batch a row lands in nor on the process, and
    a resumed run draws what the uninterrupted one drew; `HyperSegTrainer` calls `set_epoch`. Rows without an
    `index` draw from the global torch generator.

    Args:
        processor ([`HyperSegProcessor`]): builds the model inputs.
        prompt_kinds (`tuple[str]`, *optional*, defaults to all four): the visual prompt kinds drawn for interactive
            samples.
        shuffle_class_names (`bool`, *optional*, defaults to `True`): shuffle the class names of each sample.
        max_visual_prompts (`int`, *optional*): prompt at most this many (random) segments per interactive sample.
        min_prompt_area (`int`, *optional*, defaults to 16): segments smaller than this many pixels get no visual
            prompt (after resizing to the vision-tower grid they could vanish).
        seed (`int`, *optional*, defaults to 0): seed of the per-row random choices.
    """

    def __init__(
        self,
        processor,
        prompt_kinds: Sequence[str] = VISUAL_PROMPT_KEYS,
        shuffle_class_names: bool = True,
        max_visual_prompts: int | None = None,
        min_prompt_area: int = 16,
        seed: int = 0,
    ):
        unknown = sorted(set(prompt_kinds) - set(VISUAL_PROMPT_KEYS))
        if unknown or not prompt_kinds:
            raise ValueError(f"prompt_kinds must be a non-empty subset of {VISUAL_PROMPT_KEYS}, got {prompt_kinds}")
        self.processor = processor
        self.prompt_kinds = tuple(prompt_kinds)
        self.shuffle_class_names = shuffle_class_names
        self.max_visual_prompts = max_visual_prompts
        self.min_prompt_area = min_prompt_area
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, example: Mapping) -> np.random.Generator:
        if "index" in example and example["index"] is not None:
            return np.random.default_rng([self.seed, self.epoch, int(example["index"])])
        return np.random.default_rng(int(torch.randint(2**62, ())))

    def __call__(self, examples: list[Mapping]) -> dict:
        indices = [example.get("index", position) for position, example in enumerate(examples)]
        for example, index in zip(examples, indices):
            validate_example(example, index)
        tasks = sorted({example["task"] for example in examples})
        if len(tasks) > 1:
            raise ValueError(
                f"a batch must hold one task, got {tasks} (samples {indices}); train with HyperSegTrainer, whose "
                "sampler batches rows by task"
            )
        task = tasks[0]
        rngs = [self._generator(example) for example in examples]
        if task == "chat":
            return self._chat_batch(examples, indices)
        if task in VIDEO_TASKS:
            num_frames = {len(example["frames"]) for example in examples}
            if len(num_frames) > 1:
                raise ValueError(
                    f"the clips of a batch must have the same number of frames, got {sorted(num_frames)} "
                    f"(samples {indices})"
                )
            frames = range(num_frames.pop())
            return {
                "video_frames": [self._segmentation_batch(examples, indices, task, frame, rngs) for frame in frames]
            }
        return self._segmentation_batch(examples, indices, task, 0, rngs)

    def _segmentation_batch(self, examples, indices, task: str, frame: int, rngs: list[np.random.Generator]) -> dict:
        backbone_size = self.processor.image_processor.backbone_size
        images, masks, call_kwargs = [], [], {}
        texts, class_names, class_labels, prompts = [], [], [], []
        if task == "interactive":
            candidates = [self._prompt_candidates(example, index) for example, index in zip(examples, indices)]
            # the model needs the same number of <region> tokens in every sample of a batch
            num_prompts = min(len(c) for c in candidates)
            if self.max_visual_prompts is not None:
                num_prompts = min(num_prompts, self.max_visual_prompts)
        for position, (example, index, rng) in enumerate(zip(examples, indices, rngs)):
            frames, maps = _frames(example)
            images.append(frames[frame])
            id_map = np.asarray(maps[frame]).astype(np.int64)
            segments = {int(segment["id"]): segment for segment in example["segments"]}
            present = [segment_id for segment_id in np.unique(id_map).tolist() if segment_id in segments]
            if task in REFERRING_TASKS:
                texts.append(example["text"])
                target = np.isin(id_map, example["target_ids"])
                sample_masks = target[None] if target.any() else np.zeros((0, *id_map.shape), dtype=bool)
            elif task in CLASS_TASKS:
                names, labels, sample_masks = self._class_targets(example, id_map, present, segments, task, rng)
                class_names.append(names)
                class_labels.append(torch.tensor(labels, dtype=torch.long))
            else:
                sample_prompts, sample_masks = self._interactive_targets(id_map, candidates[position], num_prompts, rng)
                prompts.append(sample_prompts)
            masks.append(sample_masks)

        if task in REFERRING_TASKS:
            call_kwargs["text"] = texts
        elif task in CLASS_TASKS:
            if len({len(names) for names in class_names}) > 1:
                raise ValueError(f"the samples of a batch must have the same number of class names (samples {indices})")
            call_kwargs["class_names"] = class_names
        else:
            call_kwargs["visual_prompts"] = prompts
        batch = dict(self.processor(images=images, task=task, return_tensors="pt", **call_kwargs))
        self._check_finite(batch, indices)
        batch["mask_labels"] = [_to_backbone_input(sample_masks, backbone_size) for sample_masks in masks]
        if task in CLASS_TASKS:
            batch["class_labels"] = class_labels
        return batch

    def _class_targets(self, example, id_map, present, segments, task, rng):
        """Shuffled class names, and the labels (in the shuffled order) and masks of the targets of one sample."""
        class_names = list(example["class_names"])
        order = rng.permutation(len(class_names)) if self.shuffle_class_names else np.arange(len(class_names))
        new_label = np.argsort(order)  # original class id -> position in the shuffled list
        if task == "semantic":
            categories = sorted({int(segments[segment_id]["category_id"]) for segment_id in present})
            groups = [
                (category, [s for s in present if int(segments[s]["category_id"]) == category])
                for category in categories
            ]
        else:
            kept = [s for s in present if task == "panoptic" or segments[s].get("isthing", True)]
            groups = [(int(segments[s]["category_id"]), [s]) for s in kept]
        labels = [int(new_label[category]) for category, _ in groups]
        masks = np.stack([np.isin(id_map, ids) for _, ids in groups]) if groups else np.zeros((0, *id_map.shape), bool)
        return [class_names[c] for c in order], labels, masks

    def _prompt_candidates(self, example, index) -> list[int]:
        """Ids of the segments of an interactive sample large enough to be prompted."""
        id_map = np.asarray(_frames(example)[1][0])
        ids = {int(segment["id"]) for segment in example["segments"]}
        segment_ids, areas = np.unique(id_map, return_counts=True)
        candidates = [int(s) for s, area in zip(segment_ids, areas) if int(s) in ids and area >= self.min_prompt_area]
        if not candidates:
            raise ValueError(f"sample {index}: no segment covers {self.min_prompt_area} pixels, nothing to prompt")
        return candidates

    def _interactive_targets(self, id_map, candidates, num_prompts, rng):
        """`num_prompts` random segments of `candidates`, one visual prompt each, and their masks in prompt order."""
        if len(candidates) > num_prompts:
            candidates = sorted(rng.choice(candidates, num_prompts, replace=False).tolist())
        masks = np.stack([id_map == s for s in candidates])
        kinds = rng.choice(len(self.prompt_kinds), size=len(candidates))
        prompts = [visual_prompt_from_mask(mask, self.prompt_kinds[k], rng) for mask, k in zip(masks, kinds)]
        return prompts, masks

    def _chat_batch(self, examples, indices) -> dict:
        """Prompt + answer + `<|endoftext|>` per sample, right-padded; the loss is on the answer and the end token."""
        tokenizer = self.processor.tokenizer
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("chat training needs a tokenizer with an end-of-text (eos) and a pad token")
        sequences, pixel_values = [], []
        for example in examples:
            inputs = self.processor(images=example["image"], text=example["text"], task="chat", return_tensors="pt")
            answer = tokenizer.encode(
                " " + example["answer"].strip(), add_special_tokens=False, split_special_tokens=True
            )
            prompt = inputs["input_ids"][0].tolist()
            sequences.append((prompt + answer + [tokenizer.eos_token_id], len(prompt)))
            pixel_values.append(inputs["pixel_values"][0])
        length = max(len(ids) for ids, _ in sequences)
        input_ids = torch.full((len(examples), length), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, (ids, prompt_length) in enumerate(sequences):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            labels[row, prompt_length : len(ids)] = torch.tensor(ids[prompt_length:])
            attention_mask[row, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": torch.stack(pixel_values)}
        self._check_finite(batch, indices)
        batch["labels"] = labels
        return batch

    @staticmethod
    def _check_finite(batch: dict, indices: list) -> None:
        for key in ("pixel_values", "backbone_pixel_values"):
            if key in batch:
                finite = torch.isfinite(batch[key].flatten(1)).all(1)
                if not finite.all():
                    raise ValueError(
                        f"sample {indices[int((~finite).nonzero()[0])]}: `{key}` has NaN or infinite values"
                    )


def _to_backbone_input(masks: np.ndarray, backbone_size: int) -> torch.Tensor:
    """(n, height, width) bool masks -> (n, backbone_size, backbone_size) uint8, resized (nearest) and padded bottom /
    right exactly like the backbone image."""
    height, width = masks.shape[-2:]
    resized_height, resized_width = get_resized_size(height, width, backbone_size)
    padded = torch.zeros((len(masks), backbone_size, backbone_size), dtype=torch.uint8)
    for row, mask in enumerate(masks):
        resized = Image.fromarray(mask.astype(np.uint8)).resize((resized_width, resized_height), Image.NEAREST)
        padded[row, :resized_height, :resized_width] = torch.from_numpy(np.array(resized))
    return padded


__all__ = ["IGNORE_INDEX", "TRAINING_FEATURES", "HyperSegDataCollator", "validate_example", "visual_prompt_from_mask"]
