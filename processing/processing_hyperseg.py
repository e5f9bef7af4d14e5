# Copyright 2025 The HyperSeg port authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""HyperSegProcessor: builds the per-task prompts, tokenises them and prepares both image branches."""

import PIL.Image
import torch
from transformers import BatchFeature, ProcessorMixin

from .image_processing_hyperseg import HyperSegImageProcessor

from .prompts import (
    PROMPT_STYLES,
    TASKS,
    VIDEO_TASKS,
    Placeholder,
    PooledPrompt,
    SegToken,
    Template,
    UserText,
    build_prompt,
)

def _image_size(image) -> tuple[int, int]:
    """(height, width) of a PIL image, an HWC array or a CHW tensor."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    shape = tuple(image.shape)
    return shape[1:3] if isinstance(image, torch.Tensor) and shape[0] in (1, 3, 4) else shape[:2]


PLACEHOLDER_TOKENS = {"image": "<image>", "temporal": "<temporal>", "queries": "<seg>", "region": "<region>"}
CLASS_TASKS = ("panoptic", "instance", "semantic")
TEXT_TASKS = ("referring", "reasoning", "chat") + VIDEO_TASKS


# trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
class HyperSegProcessor(ProcessorMixin):
    r"""
    Wraps a [`HyperSegImageProcessor`] and the LLM tokenizer. `__call__` turns images and a task description into
    model inputs:

    - `task="referring" | "reasoning" | "referring_video" | "reasoning_video"` with `text` (one expression per image);
    - `task="panoptic" | "instance" | "semantic"` with `class_names` (one list for the batch, or one per image);
      "background" is appended;
    - `task="interactive"` with `visual_prompts` (per image a list of `{"box" | "point" | "scribble" | "mask": ...}`);
    - `task="chat"` with `text` (a question).

    Placeholders (`<image>`, `<temporal>`, `<seg>`, `<region>`) are added tokens expanded to their lengths; the
    referring instruction and the class names are ordinary text, located by `referring_prompt_mask` and
    `class_prompt_index`. User text is tokenised with special tokens split, so it can never inject a placeholder.

    Args:
        image_processor ([`HyperSegImageProcessor`]): prepares the vision-tower and backbone inputs.
        tokenizer ([`PreTrainedTokenizerBase`]): the LLM tokenizer, holding the placeholder tokens.
        num_image_tokens (`int`): tokens per image in the LLM (vision-tower patches).
        num_temporal_tokens (`int`): perceiver latents per image.
        num_queries (`int`): mask queries.
        seg_token (`str`, defaults to `"[SEG]"`): the token closing every pooled prompt; when it is not a single
            token of the vocabulary, its first sub-token is used, as the original does.
        prompt_style (`str`, defaults to `"hyperseg"`): `"hyperseg"` or `"instructseg"`, the wording and layout of
            the prompts the model was trained with (InstructSeg puts `<temporal>` before `<image>`, and its video
            tasks read reference frames).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens: int = 729,
        num_temporal_tokens: int = 128,
        num_queries: int = 100,
        seg_token: str = "[SEG]",
        prompt_style: str = "hyperseg",
        chat_template=None,
        **kwargs,
    ):
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
        self.prompt_style = prompt_style
        self.num_image_tokens = num_image_tokens
        self.num_temporal_tokens = num_temporal_tokens
        self.num_queries = num_queries
        self.seg_token = seg_token
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        missing = [token for token in PLACEHOLDER_TOKENS.values() if token not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"the tokenizer lacks the placeholder tokens {missing}; add them with add_tokens(..., special_tokens=True)")
        self.placeholder_ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in PLACEHOLDER_TOKENS.items()}
        self.seg_token_id = tokenizer.encode(seg_token, add_special_tokens=False)[0]


    @classmethod
    def from_model_config(cls, config, tokenizer, image_processor=None, **kwargs) -> "HyperSegProcessor":
        """
        The processor of a model with `config` ([`HyperSegConfig`]): the token counts come from the config and, unless
        `image_processor` is given, a [`HyperSegImageProcessor`] at the config's vision-tower and backbone input
        sizes. Other keyword arguments (`seg_token`, `prompt_style`, ...) go to `__init__`.
        """
        if image_processor is None:
            size = config.vision_config.image_size
            image_processor = HyperSegImageProcessor(
                size={"height": size, "width": size}, backbone_size=config.backbone_config.image_size
            )
        return cls(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=config.num_image_tokens,
            num_temporal_tokens=config.perceiver_num_latents,
            num_queries=config.num_queries,
            **kwargs,
        )

    def _encode_user_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def _tokenize_prompt(self, pieces: list, num_frames: int = 1) -> tuple[list[int], list[int], list[int]]:
        """Token ids, referring-prompt flags and class-prompt indices of one prompt (`num_frames` perceiver inputs)."""
        counts = {
            "image": self.num_image_tokens,
            "temporal": self.num_temporal_tokens * num_frames,
            "queries": self.num_queries,
            "region": 1,
        }
        input_ids, referring, class_index = [], [], []
        num_classes = 0

        def extend(ids, is_referring=0, class_id=0):
            input_ids.extend(ids)
            referring.extend([is_referring] * len(ids))
            class_index.extend([class_id] * len(ids))

        template_text = ""
        for piece in pieces + [None]:
            if isinstance(piece, Template):
                # the original tokenises the text between two placeholders in one go
                template_text += piece.text
                continue
            if template_text:
                extend(self.tokenizer.encode(template_text, add_special_tokens=False))
                template_text = ""
            if isinstance(piece, UserText):
                extend(self._encode_user_text(piece.text))
            elif isinstance(piece, Placeholder):
                extend([self.placeholder_ids[piece.name]] * counts[piece.name])
            elif isinstance(piece, SegToken):
                extend([self.seg_token_id])
            elif isinstance(piece, PooledPrompt):
                ids = self._encode_user_text(piece.text) + [self.seg_token_id]
                if piece.kind == "referring":
                    extend(ids, is_referring=1)
                else:
                    num_classes += 1
                    extend(ids, class_id=num_classes)
        return input_ids, referring, class_index

    # trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
    def __call__(
        self,
        images=None,
        text: str | list[str] | None = None,
        task: str = "referring",
        class_names: list[str] | list[list[str]] | None = None,
        visual_prompts: list | None = None,
        reference_frames: list | None = None,
        return_tensors: str | None = "pt",
        **kwargs,
    ) -> BatchFeature:
        r"""
        Args:
            images: the image(s) to segment (PIL images, arrays or tensors); for video tasks, the target frame(s).
            text: the referring expression / question, one per image; or several for a single image.
            task: one of `referring`, `reasoning`, `panoptic`, `instance`, `semantic`, `interactive`,
                `referring_video`, `reasoning_video`, `chat`.
            class_names: for `panoptic` / `instance` / `semantic`: one list for the batch or one per image; or several
                lists for a single image.
            visual_prompts: for `interactive`: per image a list of `{"box" | "point" | "scribble" | "mask": ...}`.
            reference_frames: for video tasks of an InstructSeg model: the reference frames of the target frame
                (a list of frames, or one list per image), picked e.g. with [`select_reference_frames`].

        Several prompts on a single image give one prompt row each and the image inputs once: the model then encodes
        the image once and runs the beginning the prompts share through the LLM once. Post-process them with one
        target size per prompt.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if images is None:
            raise ValueError(f"task {task!r} needs `images`")
        images = images if isinstance(images, (list, tuple)) else [images]
        batch_size = self._num_prompts(len(images), task, text, class_names)
        texts = self._per_sample(text, batch_size, "text") if task in TEXT_TASKS else [None] * batch_size
        for index, sample_text in enumerate(texts):
            if task in TEXT_TASKS and (not isinstance(sample_text, str) or not sample_text.strip()):
                raise ValueError(f"task {task!r} needs a non-empty `text` for every image (sample {index} has {sample_text!r})")
        names = [None] * batch_size
        if task in CLASS_TASKS:
            names = self._class_names(class_names, batch_size)
        prompts_per_image = [None] * batch_size
        if task == "interactive":
            if visual_prompts is None:
                raise ValueError("task 'interactive' needs `visual_prompts`")
            prompts_per_image = self._per_sample(visual_prompts, batch_size, "visual_prompts", nested=True)
            for index, prompts in enumerate(prompts_per_image):
                if not prompts:
                    raise ValueError(f"image {index} has no visual prompt")

        image_inputs = self.image_processor(
            images,
            visual_prompts=prompts_per_image if task == "interactive" else None,
            do_backbone=task != "chat",  # chat reads only the vision-tower input
            return_tensors="pt",
        )
        num_frames = 1
        if task in VIDEO_TASKS:
            if self.num_temporal_tokens == 0:
                raise ValueError(f"task {task!r} needs a video module, and this model has none (num_temporal_tokens=0)")
            if self.prompt_style == "instructseg":
                image_inputs["reference_pixel_values"] = self._reference_pixel_values(reference_frames, images)
                num_frames = image_inputs["reference_pixel_values"].shape[1]
        if reference_frames is not None and "reference_pixel_values" not in image_inputs:
            raise ValueError(
                "reference_frames are read by InstructSeg's video tasks only; HyperSeg carries the previous frame's "
                "temporal_latents instead"
            )

        encoded = [
            self._tokenize_prompt(
                build_prompt(
                    task,
                    text=texts[index],
                    class_names=names[index],
                    num_regions=len(prompts_per_image[index]) if prompts_per_image[index] else 0,
                    style=self.prompt_style,
                ),
                num_frames=num_frames,
            )
            for index in range(batch_size)
        ]
        data = dict(image_inputs)
        data.update(self._pad(encoded, task))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _reference_pixel_values(self, reference_frames, images: list) -> torch.Tensor:
        """(batch, num_reference_frames, 3, size, size) vision-tower inputs of the reference frames."""
        if not reference_frames:
            raise ValueError("InstructSeg video tasks need `reference_frames` (the frames around the target frame)")
        per_image = reference_frames if isinstance(reference_frames[0], (list, tuple)) else [reference_frames]
        if len(per_image) != len(images):
            raise ValueError(f"got {len(per_image)} lists of reference frames for {len(images)} target frames")
        if len({len(frames) for frames in per_image}) != 1:
            raise ValueError("every target frame of a batch needs the same number of reference frames")
        for index, (image, frames) in enumerate(zip(images, per_image)):
            target_size = _image_size(image)
            for frame_index, frame in enumerate(frames):
                if _image_size(frame) != target_size:
                    raise ValueError(
                        f"reference frame {frame_index} of sample {index} is {_image_size(frame)} (h, w) but the "
                        f"target frame is {target_size}: all frames of a video must have one size"
                    )
        flat = [frame for frames in per_image for frame in frames]
        pixel_values = self.image_processor(flat, do_backbone=False, return_tensors="pt")["pixel_values"]
        return pixel_values.view(len(images), len(per_image[0]), *pixel_values.shape[1:])

    def _pad(self, encoded: list[tuple[list[int], list[int], list[int]]], task: str) -> dict[str, torch.Tensor]:
        """Right-pads to the longest sample. As in the original, pad-id tokens get attention 0."""
        pad_id = self.tokenizer.pad_token_id
        length = max(len(ids) for ids, _, _ in encoded)
        input_ids = torch.full((len(encoded), length), pad_id, dtype=torch.long)
        referring = torch.zeros((len(encoded), length), dtype=torch.long)
        class_index = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, (ids, is_referring, class_id) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            referring[row, : len(ids)] = torch.tensor(is_referring)
            class_index[row, : len(ids)] = torch.tensor(class_id)
        outputs = {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long()}
        if task in ("referring", "reasoning") + VIDEO_TASKS:
            outputs["referring_prompt_mask"] = referring
        if task in CLASS_TASKS:
            outputs["class_prompt_index"] = class_index
        return outputs

    @staticmethod
    def _num_prompts(num_images: int, task: str, text, class_names) -> int:
        """One prompt per image, or as many as the texts / class-name lists given for a single image."""
        if num_images == 1 and task in TEXT_TASKS and isinstance(text, (list, tuple)):
            return len(text)
        if num_images == 1 and task in CLASS_TASKS and class_names and isinstance(class_names[0], (list, tuple)):
            return len(class_names)
        return num_images

    @staticmethod
    def _per_sample(value, batch_size: int, name: str, nested: bool = False) -> list:
        """One entry per image: a single value (or, with `nested`, a single list) is used for a batch of one."""
        single = not isinstance(value, (list, tuple)) or (nested and value and isinstance(value[0], dict))
        values = [value] if single else list(value)
        if len(values) != batch_size:
            raise ValueError(f"got {len(values)} `{name}` entries for {batch_size} images")
        return values

    @staticmethod
    def _class_names(class_names, batch_size: int) -> list[list[str]]:
        if not class_names:
            raise ValueError("class-name tasks need a non-empty `class_names` list")
        per_image = class_names if isinstance(class_names[0], (list, tuple)) else [class_names] * batch_size
        if len(per_image) != batch_size:
            raise ValueError(f"got {len(per_image)} class-name lists for {batch_size} images")
        names = []
        for index, image_names in enumerate(per_image):
            if not image_names or any(not isinstance(n, str) or not n.strip() for n in image_names):
                raise ValueError(f"class_names of image {index} must be a non-empty list of non-empty strings")
            names.append(list(image_names) + ["background"])
        if any(len(image_names) != len(names[0]) for image_names in names):
            raise ValueError("every image of a batch needs the same number of class names")
        return names

    def set_default_vocabulary(self, config, class_names: list[str]) -> None:
        """
        Makes `class_names` the vocabulary of prompt-free calls (`model(pixel_values=..., backbone_pixel_values=...)`,
        as transformers' `image-segmentation` pipeline makes them): sets `config.id2label` / `config.label2id` and
        `config.default_prompt_inputs`, the tokenised panoptic prompt over those names with every placeholder run
        collapsed to one token (the model expands them again).

        Args:
            config ([`HyperSegConfig`]): the model's configuration, updated in place.
            class_names (`list[str]`): the class names, in label-id order ("background" is appended to the prompt).
        """
        names = self._class_names(class_names, 1)[0]
        pieces = build_prompt("panoptic", class_names=names, style=self.prompt_style)
        encoded = {name: row[0] for name, row in self._pad([self._tokenize_prompt(pieces)], "panoptic").items()}
        input_ids = encoded["input_ids"]
        expanded_ids = [self.placeholder_ids[name] for name in ("image", "temporal", "queries")]
        repeated = torch.isin(input_ids, torch.tensor(expanded_ids)) & (input_ids == input_ids.roll(1))
        repeated[0] = False
        config.default_prompt_inputs = {name: values[~repeated].tolist() for name, values in encoded.items()}
        config.id2label = dict(enumerate(class_names))
        config.label2id = {name: index for index, name in enumerate(class_names)}

    def post_process_referring_segmentation(self, outputs, target_sizes):
        return self.image_processor.post_process_referring_segmentation(outputs, target_sizes=target_sizes)

    def post_process_interactive_segmentation(self, outputs, target_sizes):
        return self.image_processor.post_process_interactive_segmentation(outputs, target_sizes=target_sizes)

    def post_process_panoptic_segmentation(self, outputs, **kwargs):
        return self.image_processor.post_process_panoptic_segmentation(outputs, **kwargs)

    def post_process_instance_segmentation(self, outputs, **kwargs):
        return self.image_processor.post_process_instance_segmentation(outputs, **kwargs)

    def post_process_semantic_segmentation(self, outputs, **kwargs):
        return self.image_processor.post_process_semantic_segmentation(outputs, **kwargs)

    @property
    def model_input_names(self):
        return [
            "input_ids", "attention_mask", "pixel_values", "backbone_pixel_values", "pixel_mask",
            "referring_prompt_mask", "class_prompt_index", "region_masks", "reference_pixel_values",
        ]


__all__ = ["HyperSegProcessor"]
