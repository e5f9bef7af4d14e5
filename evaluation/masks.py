"""Mask and label-map helpers shared by the metrics and the dataset readers.

Every array that enters a metric goes through one of the `as_*` functions here, so that a wrong input fails with a
message naming the sample it came from instead of being silently cast (an 8-bit 0/255 mask, for example, would
otherwise become an all-True boolean mask in Arrow).
"""

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils


def to_numpy(array) -> np.ndarray:
    """Returns `array` (a numpy array, a torch tensor, a PIL image or nested lists) as a numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def as_binary_mask(mask, *, description: str, ndim: int = 2) -> np.ndarray:
    """Validates a binary mask and returns it as a boolean array.

    Args:
        mask: boolean array, or an integer/float array holding only 0 and 1.
        description: names the sample in error messages, e.g. `"sample 3 (prediction)"`.
        ndim: expected number of dimensions (2 for an image mask, 3 for a `(frames, height, width)` video mask).
    """
    array = to_numpy(mask)
    if array.dtype == object:
        raise ValueError(f"{description}: expected a {ndim}-D mask, got ragged nested sequences")
    if array.ndim != ndim:
        raise ValueError(f"{description}: expected a {ndim}-D mask, got shape {tuple(array.shape)}")
    if array.dtype != bool:
        values = np.unique(array)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(
                f"{description}: a binary mask must be boolean or hold only 0 and 1, "
                f"found values {values[:10].tolist()}"
            )
        array = array.astype(bool)
    return array


def as_label_map(labels, *, description: str) -> np.ndarray:
    """Validates an integer label or segment-id map of shape `(height, width)` and returns it as int64."""
    array = to_numpy(labels)
    if array.dtype == object:
        raise ValueError(f"{description}: expected a 2-D label map, got ragged nested sequences")
    if array.ndim != 2:
        raise ValueError(f"{description}: expected a 2-D label map, got shape {tuple(array.shape)}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.array_equal(array, np.round(array))):
            raise ValueError(f"{description}: a label map must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def check_same_shape(prediction: np.ndarray, reference: np.ndarray, *, index: int) -> None:
    """Raises a `ValueError` naming sample `index` when prediction and reference shapes differ."""
    if prediction.shape != reference.shape:
        raise ValueError(
            f"sample {index}: prediction shape {tuple(prediction.shape)} does not match "
            f"reference shape {tuple(reference.shape)}"
        )


def encode_rle(mask: np.ndarray) -> dict:
    """Encodes a 2-D boolean mask as a compressed COCO RLE `{"size": [h, w], "counts": str}`."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Decodes a compressed COCO RLE (counts as `str` or `bytes`) into a 2-D boolean mask."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """Converts a COCO `segmentation` (polygon list, uncompressed RLE or compressed RLE) to one compressed RLE.

    Several polygons of one annotation are merged into one mask, as `pycocotools.coco.COCO.annToRLE` does.
    """
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    counts = rle["counts"]
    return {
        "size": [int(size) for size in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def rgb_to_id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colour to segment id: `R + 256 * G + 256**2 * B` (panopticapi's `rgb2id`)."""
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def draw_polygon(mask: np.ndarray, points, value: int) -> None:
    """Fills a polygon and its one-pixel outline into `mask` in place, vertices truncated to integers.

    This stands in for OpenCV's `cv2.fillPoly` + `cv2.polylines(thickness=1)` on `np.int32` vertices, used by the
    LISA / HyperSeg ReasonSeg loaders (OpenCV is not a dependency). Both fill the polygon interior and its outline;
    PIL's and OpenCV's rasterisers may still disagree on a few pixels along oblique edges.
    """
    vertices = [(int(x), int(y)) for x, y in np.asarray(points, dtype=np.float64).astype(np.int32).tolist()]
    canvas = Image.fromarray(mask)
    ImageDraw.Draw(canvas).polygon(vertices, fill=value, outline=value)
    mask[...] = np.asarray(canvas)
