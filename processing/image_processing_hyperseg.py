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
"""Image processor for HyperSeg: the SigLIP and Swin input branches, visual prompts, and post-processing."""

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Annotated, Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_transforms import to_pil_image
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
    infer_channel_dimension_format,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType, is_torch_tensor
from transformers.utils.type_validators import resampling_validator

from .post_processing_hyperseg import (
    instance_inference,
    panoptic_inference,
    referring_inference,
    region_inference,
    resize_mask_logits,
    semantic_inference,
)


VISUAL_PROMPT_KEYS = ("box", "point", "scribble", "mask")


def get_resized_size(height: int, width: int, backbone_size: int) -> tuple[int, int]:
    """
    Size of an image inside the padded backbone input: detectron2's `ResizeShortestEdge(backbone_size,
    max_size=backbone_size)` arithmetic (scale the short side to `backbone_size`, then clamp the long side to
    `backbone_size`, round with `int(x + 0.5)`), i.e. the longest side becomes `backbone_size`.

    Args:
        height (`int`): raw image height.
        width (`int`): raw image width.
        backbone_size (`int`): side of the square backbone input.

    Returns:
        `tuple[int, int]`: the resized `(height, width)`.
    """
    size = backbone_size * 1.0
    scale = size / min(height, width)
    if height < width:
        new_height, new_width = size, scale * width
    else:
        new_height, new_width = scale * height, size
    if max(new_height, new_width) > backbone_size:
        scale = backbone_size * 1.0 / max(new_height, new_width)
        new_height, new_width = new_height * scale, new_width * scale
    return int(new_height + 0.5), int(new_width + 0.5)


def _coordinates(value: Any, count: int, description: str) -> list[float]:
    """`count` numbers of a prompt coordinate list, or a ValueError naming the expected layout."""
    try:
        numbers = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"a {description} needs {count} numbers, got {value!r}") from error
    if numbers.shape != (count,):
        raise ValueError(f"a {description} needs {count} numbers, got {value!r}")
    return numbers.tolist()


def _check_inside(x: float, y: float, height: int, width: int, description: str) -> None:
    if not (0 <= x <= width and 0 <= y <= height):
        raise ValueError(
            f"{description} ({x:g}, {y:g}) lies outside the image: x must be in [0, {width}] and y in [0, {height}]"
        )


def _dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Marks every pixel within Euclidean distance `radius` of a foreground pixel (`enhance_with_circles`)."""
    reach = math.floor(radius)
    offsets = np.arange(-reach, reach + 1)
    disk = np.sqrt(offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius
    # sums of 0/1 values are exact in float32, so `> 0` is an exact binary dilation
    hits = F.conv2d(
        torch.from_numpy(mask).float()[None, None], torch.from_numpy(disk).float()[None, None], padding=reach
    )
    return (hits[0, 0] > 0).numpy().astype(np.uint8)


def visual_prompt_to_mask(
    prompt: Mapping[str, Any], height: int, width: int, point_radius: float = 10, scribble_radius: float = 5
) -> np.ndarray:
    """
    Rasterises one visual prompt to a binary mask at raw image size, as the original region mapper does.

    Args:
        prompt (`Mapping[str, Any]`):
            A dict with exactly one key: `"box"` `[x0, y0, x1, y1]` (the filled half-open pixel rectangle
            `[floor(y0), ceil(y1)) x [floor(x0), ceil(x1))`), `"point"` `[x, y]` (one pixel, then dilated by
            `point_radius`), `"scribble"` `[[x, y], ...]` (a polyline drawn with `PIL.ImageDraw.line(width=1)`, then
            dilated by `scribble_radius`) or `"mask"` (an array of shape `(height, width)`, non-zero = foreground).
            Coordinates are in raw pixels and must lie in `[0, width] x [0, height]`.
        height (`int`): raw image height.
        width (`int`): raw image width.
        point_radius (`float`, *optional*, defaults to 10): dilation radius of point prompts, in pixels.
        scribble_radius (`float`, *optional*, defaults to 5): dilation radius of scribble prompts, in pixels.

    Returns:
        `np.ndarray` of shape `(height, width)`: the mask, uint8 with values 0/1.
    """
    allowed = ", ".join(f"'{key}'" for key in VISUAL_PROMPT_KEYS)
    if not isinstance(prompt, Mapping):
        raise ValueError(f"a visual prompt must be a dict with exactly one of the keys {allowed}, got {prompt!r}")
    unknown = sorted(set(prompt) - set(VISUAL_PROMPT_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; the allowed keys are {allowed} (exactly one per prompt)")
    if len(prompt) != 1:
        raise ValueError(f"got the keys {sorted(prompt)}; a visual prompt has exactly one of the keys {allowed}")

    [(kind, value)] = prompt.items()
    mask = np.zeros((height, width), dtype=np.uint8)
    if kind == "box":
        x0, y0, x1, y1 = _coordinates(value, 4, "box [x0, y0, x1, y1]")
        _check_inside(x0, y0, height, width, "box corner (x0, y0)")
        _check_inside(x1, y1, height, width, "box corner (x1, y1)")
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"a box [x0, y0, x1, y1] needs x0 < x1 and y0 < y1, got {value!r}")
        mask[math.floor(y0) : math.ceil(y1), math.floor(x0) : math.ceil(x1)] = 1
    elif kind == "point":
        x, y = _coordinates(value, 2, "point [x, y]")
        _check_inside(x, y, height, width, "point")
        mask[min(int(y), height - 1), min(int(x), width - 1)] = 1
        mask = _dilate(mask, point_radius)
    elif kind == "scribble":
        if not isinstance(value, Sequence | np.ndarray | torch.Tensor) or len(value) < 2:
            raise ValueError(f"a scribble needs a list of at least 2 points [[x, y], ...], got {value!r}")
        points = [_coordinates(point, 2, "scribble point [x, y]") for point in value]
        for x, y in points:
            _check_inside(x, y, height, width, "scribble point")
        canvas = PIL.Image.new("L", (width, height), 0)
        PIL.ImageDraw.Draw(canvas).line([tuple(point) for point in points], fill=1, width=1)
        mask = _dilate(np.array(canvas), scribble_radius)
    else:
        array = value.detach().cpu().numpy() if is_torch_tensor(value) else np.asarray(value)
        if array.shape != (height, width):
            raise ValueError(
                f"a mask prompt must have the image's shape (height, width) = ({height}, {width}), got {array.shape}"
            )
        mask = (array != 0).astype(np.uint8)
    if not mask.any():
        raise ValueError(f"the {kind} prompt selects no pixel")
    return mask


class HyperSegImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    do_backbone (`bool`, *optional*, defaults to `self.do_backbone`):
        Whether to prepare the Swin branch (`backbone_pixel_values`, `pixel_mask`); chat prompts and InstructSeg's
        reference frames only read the SigLIP branch.
    backbone_size (`int`, *optional*, defaults to `self.backbone_size`):
        Side of the square Swin-branch input: the longest image side is resized to it, then the image is padded
        bottom/right to `backbone_size x backbone_size`.
    backbone_resample (`PILImageResampling`, *optional*, defaults to `self.backbone_resample`):
        PIL filter of the Swin-branch resize.
    backbone_pad_value (`int` or `float`, *optional*, defaults to `self.backbone_pad_value`):
        Raw (0-255) pixel value of the Swin-branch padding, applied before normalisation.
    backbone_image_mean (`float` or `list[float]`, *optional*, defaults to `self.backbone_image_mean`):
        Swin-branch normalisation mean, in 0-255 pixel units.
    backbone_image_std (`float` or `list[float]`, *optional*, defaults to `self.backbone_image_std`):
        Swin-branch normalisation standard deviation, in 0-255 pixel units.
    point_prompt_radius (`int` or `float`, *optional*, defaults to `self.point_prompt_radius`):
        Dilation radius (raw pixels) of point prompts.
    scribble_prompt_radius (`int` or `float`, *optional*, defaults to `self.scribble_prompt_radius`):
        Dilation radius (raw pixels) of scribble prompts.
    """

    do_backbone: bool
    backbone_size: int
    backbone_resample: Annotated[PILImageResampling | int | None, resampling_validator()]
    backbone_pad_value: int | float
    backbone_image_mean: float | list[float] | tuple[float, ...]
    backbone_image_std: float | list[float] | tuple[float, ...]
    point_prompt_radius: int | float
    scribble_prompt_radius: int | float


# trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
class HyperSegImageProcessor(PilBackend):
    r"""
    Constructs a HyperSeg image processor (PIL backend). Every image feeds two branches, exactly as the original:

    - SigLIP (LLM vision tokens), `pixel_values`: squash resize to `size` (BICUBIC), rescale by 1/255 (in float64,
      then cast to float32), normalise with `image_mean`/`image_std` (0.5).
    - Swin (mask backbone), `backbone_pixel_values`: resize the longest side to `backbone_size` (PIL BILINEAR, sizes
      from [`get_resized_size`]), pad bottom/right with the raw value `backbone_pad_value` (128), then
      `(x - backbone_image_mean) / backbone_image_std` in 0-255 units (ImageNet), float32. `pixel_mask` marks the
      valid pixels with 1 and the padding with 0 (the original's `padding_mask` is its inverse).

    Images are converted to RGB (grayscale replicated, alpha dropped, palettes expanded). Visual prompts (box, point,
    scribble, mask) become `region_masks` on the SigLIP grid.

    The `post_process_*` methods turn [`HyperSegForUniversalSegmentation`] outputs into masks at the raw image size
    (upsample to the padded input, crop the valid area, resize to the raw size, all non-antialiased bilinear) and
    apply HyperSeg's referring rule or PSALM's panoptic / instance / semantic / region rules.
    """

    valid_kwargs = HyperSegImageProcessorKwargs
    model_input_names = ["pixel_values", "backbone_pixel_values", "pixel_mask"]

    # SigLIP branch
    size = {"height": 384, "width": 384}
    resample = PILImageResampling.BICUBIC
    do_resize = True
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    # Swin branch
    do_backbone = True
    backbone_size = 1024
    backbone_resample = PILImageResampling.BILINEAR
    backbone_pad_value = 128
    backbone_image_mean = (123.675, 116.28, 103.53)
    backbone_image_std = (58.395, 57.12, 57.375)
    # visual prompts
    point_prompt_radius = 10
    scribble_prompt_radius = 5

    def _standardize_kwargs(
        self,
        backbone_image_mean: float | Sequence[float] | None = None,
        backbone_image_std: float | Sequence[float] | None = None,
        **kwargs,
    ) -> dict:
        """Also stores the backbone mean/std as tuples, like `image_mean`/`image_std` (JSON turns them into lists)."""
        kwargs = super()._standardize_kwargs(**kwargs)
        for key, value in (("backbone_image_mean", backbone_image_mean), ("backbone_image_std", backbone_image_std)):
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return kwargs

    # trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
    def preprocess(
        self,
        images: ImageInput,
        visual_prompts: list[dict[str, Any]] | list[list[dict[str, Any]]] | None = None,
        **kwargs: Unpack[HyperSegImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Preprocesses an image or a batch of images, and optionally their visual prompts.

        Args:
            images (`ImageInput`):
                A PIL image, a NumPy array (HWC or HW), a torch tensor (CHW or HWC), or a list of them. Any mode is
                converted to RGB; integer values are 0-255.
            visual_prompts (`list[dict]` or `list[list[dict]]`, *optional*):
                One list of prompts per image (a flat list of prompts is accepted for a single image). Each prompt is
                a dict with exactly one key, `"box"`, `"point"`, `"scribble"` or `"mask"`; see
                [`visual_prompt_to_mask`].

        Returns:
            [`BatchFeature`] with:
            - **pixel_values** -- `(batch_size, 3, size["height"], size["width"])`, SigLIP branch.
            - **backbone_pixel_values** -- `(batch_size, 3, backbone_size, backbone_size)`, Swin branch.
            - **pixel_mask** -- `(batch_size, backbone_size, backbone_size)` int64, 1 = image, 0 = padding.
            - **region_masks** -- only with `visual_prompts`: a list with one `(num_prompts, size["height"],
              size["width"])` uint8 0/1 array (tensor with `return_tensors="pt"`) per image.
        """
        return super().preprocess(images, visual_prompts, **kwargs)

    def _preprocess_image_like_inputs(
        self,
        images: ImageInput,
        visual_prompts: list[dict[str, Any]] | list[list[dict[str, Any]]] | None,
        input_data_format: str | ChannelDimension | None,
        **kwargs,
    ) -> BatchFeature:
        images = self.fetch_images(images)
        if not isinstance(images, list | tuple):
            images = list(images) if getattr(images, "ndim", None) == 4 else [images]
        images = [self._to_rgb_array(image, index, input_data_format) for index, image in enumerate(images)]

        if visual_prompts is not None:
            if len(visual_prompts) > 0 and all(isinstance(prompt, Mapping) for prompt in visual_prompts):
                visual_prompts = [visual_prompts]
            if len(visual_prompts) != len(images):
                raise ValueError(
                    f"`visual_prompts` must hold one list of prompts per image: got {len(visual_prompts)} list(s) "
                    f"for {len(images)} image(s)."
                )
        return self._preprocess(images, visual_prompts=visual_prompts, **kwargs)

    @staticmethod
    def _to_rgb_array(image: Any, index: int, input_data_format: str | ChannelDimension | None) -> np.ndarray:
        """One input image as a `(3, height, width)` uint8 RGB array; ValueError naming `index` if it is unusable."""
        if isinstance(image, PIL.Image.Image):
            if image.width * image.height == 0:
                raise ValueError(f"Image {index} has 0 pixels (height {image.height}, width {image.width}).")
            return np.asarray(image.convert("RGB")).transpose(2, 0, 1)

        array = image.detach().cpu().numpy() if is_torch_tensor(image) else image
        if not isinstance(array, np.ndarray) or array.ndim not in (2, 3):
            raise ValueError(
                f"Image {index} must be a PIL image, or an HW / HWC / CHW NumPy array or torch tensor, got "
                f"{type(image).__name__} of shape {getattr(image, 'shape', None)}."
            )
        if array.ndim == 2:
            array, input_data_format = array[..., None], ChannelDimension.LAST
        elif input_data_format is None:
            input_data_format = infer_channel_dimension_format(array, num_channels=(1, 3, 4))
        if input_data_format == ChannelDimension.FIRST:
            array = np.moveaxis(array, 0, -1)
        if array.shape[0] * array.shape[1] == 0:
            raise ValueError(f"Image {index} has 0 pixels (height {array.shape[0]}, width {array.shape[1]}).")
        rgb = to_pil_image(array, input_data_format=ChannelDimension.LAST).convert("RGB")
        return np.asarray(rgb).transpose(2, 0, 1)

    def _preprocess(
        self,
        images: list[np.ndarray],
        visual_prompts: list[list[dict[str, Any]]] | None,
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | tuple[float, ...],
        image_std: float | tuple[float, ...],
        do_backbone: bool,
        backbone_size: int,
        backbone_resample: PILImageResampling,
        backbone_pad_value: float,
        backbone_image_mean: float | Sequence[float],
        backbone_image_std: float | Sequence[float],
        point_prompt_radius: float,
        scribble_prompt_radius: float,
        return_tensors: str | TensorType | None,
        **kwargs,
    ) -> BatchFeature:
        # SigLIP branch: the stock resize / rescale / normalize pipeline
        pixel_values = super()._preprocess(
            images,
            do_resize=do_resize,
            size=size,
            resample=resample,
            do_center_crop=False,
            crop_size=None,
            do_rescale=do_rescale,
            rescale_factor=rescale_factor,
            do_normalize=do_normalize,
            image_mean=image_mean,
            image_std=image_std,
            do_pad=False,
            pad_size=None,
            return_tensors=None,
        )["pixel_values"]

        data = {"pixel_values": pixel_values}
        if do_backbone:
            # Swin branch: resize (longest side), pad with the raw pad value, then normalise
            backbone_images = []
            for image in images:
                resized_height, resized_width = get_resized_size(*image.shape[1:], backbone_size)
                resized_size = SizeDict(height=resized_height, width=resized_width)
                backbone_images.append(self.resize(image, resized_size, resample=backbone_resample))
            backbone_images, pixel_masks = self.pad(
                backbone_images,
                pad_size=SizeDict(height=backbone_size, width=backbone_size),
                fill_value=backbone_pad_value,
                return_mask=True,
            )
            backbone_images = [self.normalize(image, backbone_image_mean, backbone_image_std) for image in backbone_images]
            data["backbone_pixel_values"] = backbone_images
            data["pixel_mask"] = pixel_masks
        encoded_inputs = BatchFeature(data=data, tensor_type=return_tensors)

        if visual_prompts is not None:
            region_masks = [
                self._region_masks(
                    prompts, index, *image.shape[1:], size, resample, point_prompt_radius, scribble_prompt_radius
                )
                for index, (image, prompts) in enumerate(zip(images, visual_prompts))
            ]
            # one (num_prompts, height, width) array per image: the prompt counts differ, so no stacking
            encoded_inputs["region_masks"] = [
                torch.from_numpy(masks) if return_tensors == "pt" else masks for masks in region_masks
            ]
        return encoded_inputs

    def _region_masks(
        self,
        prompts: Iterable[dict[str, Any]],
        index: int,
        height: int,
        width: int,
        size: SizeDict,
        resample: PILImageResampling,
        point_radius: float,
        scribble_radius: float,
    ) -> np.ndarray:
        """The prompts of image `index` as `(num_prompts, size.height, size.width)` uint8 0/1 region masks."""
        region_masks = []
        for prompt_index, prompt in enumerate(prompts):
            try:
                mask = visual_prompt_to_mask(prompt, height, width, point_radius, scribble_radius)
            except ValueError as error:
                raise ValueError(f"Visual prompt {prompt_index} of image {index}: {error}.") from error
            # the SigLIP resize of the 0/1 mask (the original runs its SigLIP processor without rescale/normalise)
            region_mask = self.resize(mask[None], size=size, resample=resample)[0]
            if not region_mask.any():
                raise ValueError(
                    f"Visual prompt {prompt_index} of image {index}: the {next(iter(prompt))} prompt covers no pixel "
                    f"once resized to {size.height}x{size.width}; use a larger prompt."
                )
            region_masks.append(region_mask)
        return np.stack(region_masks) if region_masks else np.zeros((0, size.height, size.width), dtype=np.uint8)

    # Post-processing

    @staticmethod
    def _get_logits(outputs, name: str, method: str) -> torch.Tensor:
        """`outputs.<name>`, or a ValueError saying which task's prompts produce it."""
        logits = getattr(outputs, name, None)
        if logits is None:
            raise ValueError(
                f"`{method}` needs `outputs.{name}`, which is missing. Run the model with the prompts of that task "
                "(referring/reasoning text for `seg_queries_logits`, class names for `class_queries_logits`, visual "
                "prompts for `region_queries_logits`)."
            )
        return logits

    def _raw_size_mask_logits(self, outputs, target_sizes, method: str) -> Iterator[torch.Tensor]:
        """
        Per sample, the float32 mask logits `(num_queries, height, width)` at the raw size of `target_sizes`. The
        inputs are checked at once; the resizing is lazy so that one sample's full-size logits live at a time.
        """
        resizers = self._mask_logits_resizers(outputs, target_sizes, method)
        return (resize(mask_logits) for mask_logits, resize in resizers)

    def _mask_logits_resizers(
        self, outputs, target_sizes, method: str
    ) -> Iterator[tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]:
        """
        Per sample, the float32 decoder-size mask logits `(num_queries, h, w)` and the function that brings any of
        their rows to the raw size of `target_sizes`, for rules that need only some queries at full size.
        """
        masks_queries_logits = self._get_logits(outputs, "masks_queries_logits", method)  # (B, Q, h, w)
        if target_sizes is None:
            raise ValueError(f"`{method}` needs `target_sizes`: the raw (height, width) of every image.")
        if len(target_sizes) != masks_queries_logits.shape[0]:
            raise ValueError(
                f"`target_sizes` has {len(target_sizes)} entries but the batch has {masks_queries_logits.shape[0]} "
                "samples: pass one (height, width) per image."
            )
        padded_size = (self.backbone_size, self.backbone_size)
        target_sizes = [(int(height), int(width)) for height, width in target_sizes]
        return (
            (
                mask_logits.float(),
                partial(
                    resize_mask_logits,
                    padded_size=padded_size,
                    valid_size=get_resized_size(*target_size, self.backbone_size),
                    target_size=target_size,
                ),
            )
            for mask_logits, target_size in zip(masks_queries_logits, target_sizes)
        )

    def post_process_referring_segmentation(
        self, outputs, target_sizes: list[tuple[int, int]] | torch.Tensor
    ) -> list[dict[str, Any]]:
        """
        Selects, per sample, the query that best matches the referring / reasoning prompt (HyperSeg's rule):
        score_q = sigmoid(SEG logit_q) * (mean mask probability inside the binary mask `logit > 0`), top-1 query.

        Args:
            outputs ([`HyperSegOutput`] or any object with these attributes):
                `masks_queries_logits` `(batch_size, num_queries, height, width)` and `seg_queries_logits`
                `(batch_size, num_queries)`.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch_size, 2)`):
                Raw `(height, width)` of each image, as given to the processor.

        Returns:
            `list[dict]`: one dict per sample with `mask` (`torch.Tensor` of shape `(height, width)`, bool), `score`
            (`float`) and `query_index` (`int`).
        """
        method = "post_process_referring_segmentation"
        seg_queries_logits = self._get_logits(outputs, "seg_queries_logits", method)  # (B, Q)
        if seg_queries_logits.dim() != 2:
            raise ValueError(
                "`seg_queries_logits` must have shape (batch_size, num_queries), got "
                f"{tuple(seg_queries_logits.shape)}."
            )
        results = []
        for seg_logits, (mask_logits, resize) in zip(
            seg_queries_logits, self._mask_logits_resizers(outputs, target_sizes, method)
        ):
            scores = referring_inference(seg_logits.float(), mask_logits, resize)  # (Q,)
            query_index = scores.argmax().item()
            mask = resize(mask_logits[query_index : query_index + 1])[0] > 0
            results.append({"mask": mask, "score": scores[query_index].item(), "query_index": query_index})
        return results

    def post_process_interactive_segmentation(
        self, outputs, target_sizes: list[tuple[int, int]] | torch.Tensor
    ) -> list[list[dict[str, Any]]]:
        """
        Selects, per visual prompt, the best query (PSALM's region rule): score_{k,q} = sigmoid(region logit_{k,q})
        * (mean mask probability inside the binary mask `logit > 0`), top-1 query per prompt k.

        Args:
            outputs ([`HyperSegOutput`] or any object with these attributes):
                `masks_queries_logits` `(batch_size, num_queries, height, width)` and `region_queries_logits`
                `(batch_size, num_prompts, num_queries)` (or a list of `(num_prompts_i, num_queries)` tensors).
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch_size, 2)`):
                Raw `(height, width)` of each image, as given to the processor.

        Returns:
            `list[list[dict]]`: per sample, one dict per prompt with `mask` (`torch.Tensor` of shape
            `(height, width)`, bool), `score` (`float`) and `query_index` (`int`).
        """
        method = "post_process_interactive_segmentation"
        region_queries_logits = self._get_logits(outputs, "region_queries_logits", method)  # (B, K, Q)
        results = []
        for region_logits, (mask_logits, resize) in zip(
            region_queries_logits, self._mask_logits_resizers(outputs, target_sizes, method)
        ):
            scores = region_inference(region_logits.float(), mask_logits, resize)  # (K, Q)
            best_scores, query_indices = scores.max(-1)
            winners = resize(mask_logits[query_indices]) > 0  # (K, height, width)
            results.append(
                [
                    {"mask": mask, "score": score, "query_index": query_index}
                    for mask, score, query_index in zip(winners, best_scores.tolist(), query_indices.tolist())
                ]
            )
        return results

    def post_process_panoptic_segmentation(
        self,
        outputs,
        threshold: float = 0.8,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        label_ids_to_fuse: set[int] | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
    ) -> list[dict[str, Any]]:
        """
        Panoptic segmentation with PSALM's rule (see [`panoptic_inference`]). The keyword names are those of
        transformers' `image-segmentation` pipeline; the defaults are PSALM's.

        Args:
            outputs ([`HyperSegOutput`] or any object with these attributes):
                `masks_queries_logits` `(batch_size, num_queries, height, width)` and `class_queries_logits`
                `(batch_size, num_queries, num_classes + 1)` (the last class is "background").
            threshold (`float`, *optional*, defaults to 0.8):
                Minimum class probability of a query to be kept.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Probability from which a pixel belongs to a query's mask.
            overlap_mask_area_threshold (`float`, *optional*, defaults to 0.8):
                Minimum (pixels a query wins) / (pixels of its mask) for it to become a segment.
            label_ids_to_fuse (`set[int]`, *optional*):
                The stuff classes: all their queries are merged into one segment per class. `None` treats every
                class as a thing.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch_size, 2)`):
                Raw `(height, width)` of each image, as given to the processor (required).

        Returns:
            `list[dict]`: one dict per sample with `segmentation` (`torch.Tensor` of shape `(height, width)`, int64,
            0 = void, segment ids from 1) and `segments_info` (one dict per segment: `id`, `label_id`, `score`,
            `isthing`).
        """
        method = "post_process_panoptic_segmentation"
        class_queries_logits = self._get_logits(outputs, "class_queries_logits", method)  # (B, Q, C)
        results = []
        for class_logits, (mask_logits, resize) in zip(
            class_queries_logits, self._mask_logits_resizers(outputs, target_sizes, method)
        ):
            segmentation, segments_info = panoptic_inference(
                class_logits.float(),
                mask_logits,
                threshold=threshold,
                mask_threshold=mask_threshold,
                overlap_mask_area_threshold=overlap_mask_area_threshold,
                label_ids_to_fuse=label_ids_to_fuse,
                resize=resize,
            )
            results.append({"segmentation": segmentation, "segments_info": segments_info})
        return results

    def post_process_instance_segmentation(
        self,
        outputs,
        threshold: float = 0.0,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        stuff_label_ids: set[int] | None = None,
        return_binary_maps: bool = False,
    ) -> list[dict[str, Any]]:
        """
        Instance segmentation with PSALM's rule (see [`instance_inference`]): the `num_queries` best (query, class)
        pairs, score = class probability * mean mask probability inside the binary mask. Predictions are sorted by
        decreasing score and those with `score >= threshold` are kept (the default 0.0 keeps all of them, as PSALM
        does for COCO evaluation).

        Args:
            outputs ([`HyperSegOutput`] or any object with these attributes):
                `masks_queries_logits` `(batch_size, num_queries, height, width)` and `class_queries_logits`
                `(batch_size, num_queries, num_classes + 1)` (the last class is "background").
            threshold (`float`, *optional*, defaults to 0.0):
                Minimum score of a kept prediction.
            mask_threshold (`float`, *optional*, defaults to 0.5):
                Probability above which a pixel belongs to a mask.
            overlap_mask_area_threshold (`float`, *optional*, defaults to 0.8):
                Not used by the instance rule; accepted because the `image-segmentation` pipeline passes it.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch_size, 2)`):
                Raw `(height, width)` of each image, as given to the processor (required).
            stuff_label_ids (`set[int]`, *optional*):
                Classes whose predictions are dropped (PSALM keeps only thing classes when it evaluates a panoptic
                model's instances).
            return_binary_maps (`bool`, *optional*, defaults to `False`):
                Return every kept prediction's own binary mask instead of a segment map, e.g. for COCO mask AP,
                where instances may overlap.

        Returns:
            `list[dict]`: one dict per sample with `segmentation` and `segments_info` (one dict per prediction: `id`,
            `label_id`, `score`, `query_index`).
            - By default `segmentation` is a `(height, width)` int64 map (0 = void, ids from 1); each pixel goes to
              the best-scoring prediction that covers it, and predictions with empty masks are left out.
            - With `return_binary_maps=True` it is a `(num_predictions, height, width)` bool tensor whose row `i`
              is the mask of `segments_info[i]` (`id = i + 1`); empty masks are kept.
        """
        method = "post_process_instance_segmentation"
        class_queries_logits = self._get_logits(outputs, "class_queries_logits", method)  # (B, Q, C)
        results = []
        for class_logits, (mask_logits, resize) in zip(
            class_queries_logits, self._mask_logits_resizers(outputs, target_sizes, method)
        ):
            scores, labels, query_indices, masks = instance_inference(
                class_logits.float(),
                mask_logits,
                mask_threshold=mask_threshold,
                stuff_label_ids=stuff_label_ids,
                resize=resize,
            )
            keep = scores >= threshold
            if not return_binary_maps:
                keep &= masks.flatten(1).any(1)
            scores, labels, query_indices, masks = scores[keep], labels[keep], query_indices[keep], masks[keep]
            segments_info = [
                {"id": index + 1, "label_id": label, "score": score, "query_index": query_index}
                for index, (score, label, query_index) in enumerate(
                    zip(scores.tolist(), labels.tolist(), query_indices.tolist())
                )
            ]
            if return_binary_maps:
                segmentation = masks
            else:
                # paint from the lowest to the highest score so that every pixel ends with its best prediction
                segmentation = torch.zeros(masks.shape[-2:], dtype=torch.long, device=masks.device)
                for index in reversed(range(len(segments_info))):
                    segmentation[masks[index]] = index + 1
            results.append({"segmentation": segmentation, "segments_info": segments_info})
        return results

    def post_process_semantic_segmentation(
        self, outputs, target_sizes: list[tuple[int, int]] | torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """
        Semantic segmentation with PSALM's rule (see [`semantic_inference`]): per pixel, the class c (background
        excluded) maximising sum_q softmax(class)_{q,c} * sigmoid(mask_q), computed on the raw-size mask logits.

        Args:
            outputs ([`HyperSegOutput`] or any object with these attributes):
                `masks_queries_logits` `(batch_size, num_queries, height, width)` and `class_queries_logits`
                `(batch_size, num_queries, num_classes + 1)` (the last class is "background").
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch_size, 2)`):
                Raw `(height, width)` of each image, as given to the processor (required).

        Returns:
            `list[torch.Tensor]`: one `(height, width)` int64 map of class ids per sample.
        """
        method = "post_process_semantic_segmentation"
        class_queries_logits = self._get_logits(outputs, "class_queries_logits", method)  # (B, Q, C)
        return [
            semantic_inference(class_logits.float(), mask_logits).argmax(0)
            for class_logits, mask_logits in zip(
                class_queries_logits, self._raw_size_mask_logits(outputs, target_sizes, method)
            )
        ]


__all__ = ["HyperSegImageProcessor", "get_resized_size", "visual_prompt_to_mask"]
