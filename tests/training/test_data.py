"""The collator: targets aligned with the processor's inputs for every task, and bad rows rejected by index."""

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import IMAGE_SIZE, tiny_processor

from hyperseg.processing.image_processing_hyperseg import get_resized_size
from hyperseg.training.data import IGNORE_INDEX, HyperSegDataCollator, validate_example, visual_prompt_from_mask
from hyperseg.training.synthetic import SHAPES_CLASS_NAMES, synthetic_dataset


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def rows():
    """Rows by task, 64 x 64 scenes (48 x 64 for referring, to exercise the resize and padding)."""
    by_task = {}
    for task in ("panoptic", "instance", "semantic", "interactive", "referring_video", "chat"):
        by_task[task] = list(synthetic_dataset(4, seed=1, tasks=(task,), height=IMAGE_SIZE, width=IMAGE_SIZE))
    by_task["referring"] = list(synthetic_dataset(4, seed=1, tasks=("referring",), height=48, width=IMAGE_SIZE))
    return by_task


def _class_prompt_names(processor, batch, sample: int) -> list[str]:
    """The class names of one sample as the LLM reads them, from `class_prompt_index` (the [SEG] closer dropped)."""
    index = batch["class_prompt_index"][sample]
    names = []
    for class_id in range(1, int(index.max()) + 1):
        ids = batch["input_ids"][sample][index == class_id][:-1]
        names.append(processor.tokenizer.decode(ids).strip())
    return names


def test_referring_targets_are_resized_and_padded_like_the_image(processor, rows):
    batch = HyperSegDataCollator(processor)(rows["referring"][:2])
    height, width = get_resized_size(48, IMAGE_SIZE, IMAGE_SIZE)
    for row, masks in zip(rows["referring"], batch["mask_labels"]):
        assert masks.shape == (1, IMAGE_SIZE, IMAGE_SIZE) and masks.dtype == torch.uint8
        target = np.isin(np.asarray(row["segmentation"]), row["target_ids"]).astype(np.uint8)
        expected = np.asarray(Image.fromarray(target).resize((width, height), Image.NEAREST))
        assert np.array_equal(masks[0, :height, :width].numpy(), expected)
        assert not masks[0, height:].any() and not masks[0, :, width:].any()
    # the padding of the image itself is where the masks are padded
    assert not batch["pixel_mask"][0, height:].any() and batch["pixel_mask"][0, :height, :width].all()


def test_class_names_are_shuffled_and_labels_follow_them(processor, rows):
    collator = HyperSegDataCollator(processor)
    orders = set()
    for epoch in range(4):
        collator.set_epoch(epoch)
        batch = collator(rows["panoptic"][:2])
        # the draws of a row depend on (seed, epoch, index) only: not on the batch it is in
        assert torch.equal(collator(rows["panoptic"][1:2])["input_ids"][0], batch["input_ids"][1])
        for sample, row in enumerate(rows["panoptic"][:2]):
            names = _class_prompt_names(processor, batch, sample)
            orders.add((sample, tuple(names)))
            assert sorted(names[:-1]) == sorted(SHAPES_CLASS_NAMES) and names[-1] == "background"
            segmentation = np.asarray(row["segmentation"])
            for label, mask in zip(batch["class_labels"][sample].tolist(), batch["mask_labels"][sample]):
                segment_ids = np.unique(segmentation[mask.numpy().astype(bool)])
                [segment] = [s for s in row["segments"] if s["id"] in segment_ids]
                assert names[label] == SHAPES_CLASS_NAMES[segment["category_id"]]
    assert len(orders) > 4  # new orders from epoch to epoch
    batch = HyperSegDataCollator(processor, shuffle_class_names=False)(rows["panoptic"][:1])
    assert _class_prompt_names(processor, batch, 0) == list(SHAPES_CLASS_NAMES) + ["background"]


def test_instance_keeps_things_and_semantic_merges_classes(processor, rows):
    collator = HyperSegDataCollator(processor, shuffle_class_names=False)
    instance = collator(rows["instance"][:1])
    things = [s for s in rows["instance"][0]["segments"] if s["isthing"]]
    assert sorted(instance["class_labels"][0].tolist()) == sorted(s["category_id"] for s in things)
    semantic = collator(rows["semantic"][:1])
    labels = semantic["class_labels"][0].tolist()
    assert len(labels) == len(set(labels)) == len({s["category_id"] for s in rows["semantic"][0]["segments"]})
    # every pixel belongs to exactly one class mask (the scenes have no void)
    assert (semantic["mask_labels"][0].sum(0) == 1).all()


def test_visual_prompts_are_derived_from_the_mask():
    mask = np.zeros((20, 30), dtype=bool)
    mask[4:12, 6:20] = True
    mask[5, 6] = False
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = visual_prompt_from_mask(mask, "point", rng)["point"]
        assert mask[y, x]
        for x, y in visual_prompt_from_mask(mask, "scribble", rng)["scribble"]:
            assert mask[y, x]
    assert visual_prompt_from_mask(mask, "box", rng) == {"box": [6, 4, 20, 12]}
    assert np.array_equal(visual_prompt_from_mask(mask, "mask", rng)["mask"], mask)
    with pytest.raises(ValueError, match="empty mask"):
        visual_prompt_from_mask(np.zeros((4, 4), bool), "point", rng)


def test_interactive_prompt_k_covers_target_k(processor, rows):
    collator = HyperSegDataCollator(processor, prompt_kinds=("box", "mask"))
    batch = collator(rows["interactive"][:2])
    size = processor.image_processor.size["height"]
    for regions, masks in zip(batch["region_masks"], batch["mask_labels"]):
        assert len(regions) == len(masks) >= 1
        targets = torch.nn.functional.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0]
        regions, targets = regions.bool().flatten(1), targets.bool().flatten(1)
        intersection = (regions[:, None] & targets[None]).sum(-1)  # prompt k x target j
        union = (regions[:, None] | targets[None]).sum(-1)
        assert ((intersection / union).argmax(1) == torch.arange(len(masks))).all()
    # the same number of prompts in every sample (the model needs as many <region> tokens per sample)
    assert len({len(masks) for masks in batch["mask_labels"]}) == 1


def test_video_batch_has_one_batch_per_frame(processor, rows):
    batch = HyperSegDataCollator(processor)(rows["referring_video"][:2])
    assert list(batch) == ["video_frames"] and len(batch["video_frames"]) == 3
    for frame, frame_batch in enumerate(batch["video_frames"]):
        for row, masks in zip(rows["referring_video"], frame_batch["mask_labels"]):
            target = np.isin(np.asarray(row["segmentations"][frame]), row["target_ids"])
            assert masks.shape[0] == 1 and np.array_equal(masks[0].numpy().astype(bool), target)


def test_chat_labels_align_with_the_expanded_input_ids(processor, rows):
    batch = HyperSegDataCollator(processor)(rows["chat"][:2])
    tokenizer = processor.tokenizer
    for sample, row in enumerate(rows["chat"][:2]):
        prompt = processor(images=row["image"], text=row["text"], task="chat")["input_ids"][0]
        length = int(batch["attention_mask"][sample].sum())
        assert torch.equal(batch["input_ids"][sample, : len(prompt)], prompt)
        labels = batch["labels"][sample]
        assert (labels[: len(prompt)] == IGNORE_INDEX).all() and (labels[length:] == IGNORE_INDEX).all()
        assert torch.equal(labels[len(prompt) : length], batch["input_ids"][sample, len(prompt) : length])
        assert tokenizer.decode(labels[len(prompt) : length]) == f" {row['answer']}{tokenizer.eos_token}"


def test_a_batch_mixing_tasks_is_rejected(processor, rows):
    with pytest.raises(ValueError, match="a batch must hold one task"):
        HyperSegDataCollator(processor)([rows["panoptic"][0], rows["referring"][0]])


def _corrupt(row: dict, problem: str) -> dict:
    row = dict(row)
    if problem == "mask size":
        row["segmentation"] = row["segmentation"].resize((32, 32))
    elif problem == "class id":
        row["segments"] = [dict(s, category_id=7) if i == 0 else s for i, s in enumerate(row["segments"])]
    elif problem == "empty prompt":
        row["task"], row["text"], row["target_ids"] = "referring", "  ", [1]
    elif problem == "nan pixels":
        image = np.asarray(row["image"]).astype(np.float32) / 255
        image[3, 4, 0] = np.nan
        row["image"] = image
    elif problem == "unknown target":
        row["task"], row["text"], row["target_ids"] = "referring", "the red circle", [42]
    return row


@pytest.mark.parametrize(
    "problem, message",
    [
        ("mask size", r"sample 7: the segmentation map has size \(32, 32\) but the image has size \(64, 64\)"),
        ("class id", r"sample 7: segment 1 has class id 7, outside the 5 class names"),
        ("empty prompt", r"sample 7: task 'referring' needs a non-empty `text` prompt"),
        ("nan pixels", r"sample 7: image has NaN or infinite pixels"),
        ("unknown target", r"sample 7: `target_ids` \[42\] are not ids of `segments`"),
    ],
)
def test_bad_rows_are_rejected_naming_the_sample(processor, rows, problem, message):
    good = dict(rows["panoptic"][0], index=6)
    bad = _corrupt(dict(rows["panoptic"][1], index=7), problem)
    with pytest.raises(ValueError, match=message):
        validate_example(bad, bad["index"])
    if bad["task"] == good["task"]:
        with pytest.raises(ValueError, match=message):
            HyperSegDataCollator(processor)([good, bad])
