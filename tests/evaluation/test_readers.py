"""Dataset readers, each on a tiny synthetic copy of its on-disk layout written by the test."""

import collections
import json
import logging
import pickle

import datasets
import numpy as np
import pytest
from hyperseg.evaluation.masks import decode_rle, encode_rle
from hyperseg.evaluation.readers import (
    coco_instance_categories,
    coco_panoptic_categories,
    panoptic_id_map,
    read_coco_instances,
    read_coco_panoptic,
    read_davis,
    read_grefcoco,
    read_reasonseg,
    read_refcoco,
    read_referring_video,
    read_revos,
    read_semantic_segmentation,
    read_youtube_vis,
    revos_masks,
    semantic_class_names,
    youtube_vis_categories,
)
from layouts import (
    square_mask,
    write_ade,
    write_coco_instances,
    write_coco_panoptic,
    write_image,
    write_json,
    write_palette_png,
    write_refcoco,
)


def stored_path(dataset, column, row=0):
    """The raw stored value of an image column (or list of images): a path, no bytes (images are not copied)."""
    undecoded = datasets.Image(decode=False)
    if isinstance(dataset.features[column], datasets.List):
        undecoded = datasets.List(undecoded)
    return dataset.cast_column(column, undecoded)[row][column]


# --- RefCOCO / gRefCOCO ----------------------------------------------------------------------------------------------


def test_refcoco_reader(tmp_path):
    write_refcoco(tmp_path)
    dataset = read_refcoco(tmp_path, "refcoco", "val")
    assert len(dataset) == 2  # one row per sentence
    assert dataset["sentence"] == ["left box", "the top one"] and dataset["raw_sentence"] == [
        "LEFT BOX",
        "THE TOP ONE",
    ]
    assert dataset["sentence_id"] == [100, 101] and dataset["ref_id"] == [0, 0]
    expected = np.zeros((8, 10), dtype=bool)
    expected[1:4, 2:6] = True  # pycocotools rasterises the polygon (2,1)-(6,4) as the half-open box
    np.testing.assert_array_equal(decode_rle(dataset[0]["mask_rle"]), expected)
    assert isinstance(dataset.features["image"], datasets.Image)
    assert stored_path(dataset, "image") == {
        "bytes": None,
        "path": str(tmp_path / "images/train2014/COCO_train2014_000000000001.jpg"),
    }
    assert dataset[0]["image"].size == (10, 8)

    test_a = read_refcoco(tmp_path, "refcoco", "testA")
    np.testing.assert_array_equal(decode_rle(test_a[0]["mask_rle"]), square_mask(8, 10, 5, 6, 2))


def test_grefcoco_reader(tmp_path):
    write_refcoco(tmp_path, refs_format="json")
    dataset = read_grefcoco(tmp_path, "val")
    assert dataset["no_target"] == [True, False]
    assert not decode_rle(dataset[0]["mask_rle"]).any()
    expected = square_mask(8, 10, 5, 6, 2)
    expected[1:4, 2:6] = True  # union of annotations 11 and 12; crowd annotation 13 left out
    np.testing.assert_array_equal(decode_rle(dataset[1]["mask_rle"]), expected)


def test_refcoco_missing_annotation_file(tmp_path):
    write_refcoco(tmp_path)
    (tmp_path / "refcoco" / "instances.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"refcoco instances file not found: .*refcoco/instances.json"):
        read_refcoco(tmp_path, "refcoco", "val")


def test_refcoco_missing_refs_file(tmp_path):
    (tmp_path / "refcoco+").mkdir()
    with pytest.raises(FileNotFoundError, match=r"neither .*refs\(unc\).p nor .*refs\(unc\).json exists"):
        read_refcoco(tmp_path, "refcoco+", "val")


def test_refcoco_missing_image_raises_or_is_counted(tmp_path, caplog):
    write_refcoco(tmp_path)
    (tmp_path / "images" / "train2014" / "COCO_train2014_000000000001.jpg").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"sample 0 \(ref_id=0, sentence_id=100.*\) refers to .*000000000001.jpg"
    ):
        read_refcoco(tmp_path, "refcoco", "val")
    with caplog.at_level(logging.WARNING, logger="hyperseg.evaluation"):
        dataset = read_refcoco(tmp_path, "refcoco", "val", skip_missing=True)
    assert len(dataset) == 0
    assert "skipped 2 of 2 samples" in caplog.text


def test_refcoco_unknown_annotation_id(tmp_path):
    write_refcoco(tmp_path)
    instances = json.loads((tmp_path / "refcoco" / "instances.json").read_text())
    instances["annotations"] = instances["annotations"][1:]
    write_json(tmp_path / "refcoco" / "instances.json", instances)
    with pytest.raises(ValueError, match=r"ref 0 refers to annotation 11, absent from .*instances.json"):
        read_refcoco(tmp_path, "refcoco", "val")


def test_refs_pickle_with_code_is_refused(tmp_path):
    write_refcoco(tmp_path)
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as file:
        pickle.dump(collections.OrderedDict(a=1), file)  # needs a class lookup: not plain data
    with pytest.raises(ValueError, match=r"refs\(unc\).p is not a plain-data refer pickle"):
        read_refcoco(tmp_path, "refcoco", "val")


def test_refcoco_unknown_split(tmp_path):
    write_refcoco(tmp_path)
    with pytest.raises(ValueError, match=r"no ref in split 'testB'; available splits: \['testA', 'val'\]"):
        read_refcoco(tmp_path, "refcoco", "testB")


# --- ReasonSeg -------------------------------------------------------------------------------------------------------


def test_reasonseg_reader(tmp_path):
    write_image(tmp_path / "val" / "a.jpg", size=(12, 9))
    shapes = [
        {"label": "ignore", "points": [[3, 2], [5, 2], [5, 4], [3, 4]]},
        {"label": "target", "points": [[1.7, 1], [8, 1], [8, 6], [1, 6]]},
        {"label": "flag", "points": [[0, 0], [11, 0], [11, 8], [0, 8]]},
    ]
    write_json(
        tmp_path / "val" / "a.json",
        {"text": ["  what holds the cup?  ", "other"], "is_sentence": True, "shapes": shapes},
    )
    dataset = read_reasonseg(tmp_path, "val")
    assert dataset[0]["sentence"] == "what holds the cup?" and dataset[0]["is_sentence"] is True
    expected = np.zeros((9, 12), dtype=bool)
    expected[1:7, 1:9] = True  # target polygon with its outline, vertices truncated to integers
    expected[2:5, 3:6] = False  # the smaller ignore polygon is drawn afterwards with 0 (HyperSeg's O10 rule)
    np.testing.assert_array_equal(decode_rle(dataset[0]["mask_rle"]), expected)


def test_reasonseg_missing_annotation(tmp_path):
    write_image(tmp_path / "val" / "b.jpg")
    with pytest.raises(FileNotFoundError, match=r"ReasonSeg annotation of b.jpg not found: .*val/b.json"):
        read_reasonseg(tmp_path, "val")


# --- COCO panoptic ---------------------------------------------------------------------------------------------------


def test_coco_instances_reader(tmp_path):
    from pycocotools.coco import COCO

    annotation_file = write_coco_instances(tmp_path)
    dataset = read_coco_instances(tmp_path, "val")
    assert [row["image_id"] for row in dataset] == [1, 7] and dataset[1]["instances"] == []  # empty images kept
    coco = COCO(str(annotation_file))  # pycocotools' own decoding of polygon, uncompressed and compressed RLE
    instances = dataset[0]["instances"]
    assert [(i["category_id"], i["iscrowd"]) for i in instances] == [(1, 0), (1, 1), (18, 0)]
    for instance, annotation in zip(instances, coco.loadAnns([1, 2, 3])):
        np.testing.assert_array_equal(decode_rle(instance["mask_rle"]), coco.annToMask(annotation).astype(bool))
    assert [category["name"] for category in coco_instance_categories(tmp_path, "val")] == ["person", "dog"]

    (tmp_path / "val2017" / "0002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample 1 \(image_id=7, file_name=0002.jpg\) refers to .*0002.jpg"):
        read_coco_instances(tmp_path, "val")
    assert len(read_coco_instances(tmp_path, "val", skip_missing=True)) == 1

    content = json.loads(annotation_file.read_text())
    content["annotations"][0]["image_id"] = 99
    annotation_file.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"annotation 1 refers to unknown image id 99"):
        read_coco_instances(tmp_path, "val")


def test_coco_panoptic_reader(tmp_path):
    id_map = write_coco_panoptic(tmp_path)
    dataset = read_coco_panoptic(tmp_path, "val")
    np.testing.assert_array_equal(panoptic_id_map(dataset[0]["panoptic"]), id_map)
    assert [segment["iscrowd"] for segment in dataset[0]["segments_info"]] == [0, 1, 0]
    assert [category["name"] for category in coco_panoptic_categories(tmp_path, "val")] == ["person", "sky"]
    assert stored_path(dataset, "panoptic")["path"].endswith("panoptic_val2017/0001.png")


def test_coco_panoptic_missing_png(tmp_path):
    write_coco_panoptic(tmp_path)
    (tmp_path / "panoptic_val2017" / "0001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample 0 \(image_id=1, file_name=0001.jpg\) refers to .*0001.png"):
        read_coco_panoptic(tmp_path, "val")


def test_coco_panoptic_missing_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"COCO panoptic annotation file not found: .*panoptic_val2017.json"):
        read_coco_panoptic(tmp_path, "val")


# --- semantic --------------------------------------------------------------------------------------------------------


def test_semantic_reader(tmp_path):
    write_ade(tmp_path)
    dataset = read_semantic_segmentation("ade20k", tmp_path)
    assert dataset["file_name"] == ["ADE_val_1.jpg", "ADE_val_2.jpg"]
    np.testing.assert_array_equal(np.asarray(dataset[0]["label"]), [[0, 1, 149, 255]] * 3)
    names = semantic_class_names("ade20k", tmp_path)
    assert len(names) == 150 and names[0] == "name0, alias0"
    assert len(semantic_class_names("pascal_context_59", tmp_path)) == 59
    assert len(semantic_class_names("pascal_voc_20", tmp_path)) == 20


def test_semantic_missing_image_and_class_list(tmp_path, caplog):
    write_ade(tmp_path, names=149)
    (tmp_path / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample 1 \(file_name=ADE_val_2.jpg\) refers to .*ADE_val_2.jpg"):
        read_semantic_segmentation("ade20k", tmp_path)
    with caplog.at_level(logging.WARNING, logger="hyperseg.evaluation"):
        assert len(read_semantic_segmentation("ade20k", tmp_path, skip_missing=True)) == 1
    assert "skipped 1 of 2 samples" in caplog.text
    with pytest.raises(ValueError, match=r"objectInfo150.txt lists 149 classes, expected 150"):
        semantic_class_names("ade20k", tmp_path)


# --- DAVIS-17 --------------------------------------------------------------------------------------------------------


def test_davis_reader(tmp_path):
    (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("bear\n")
    for frame in ("00000", "00001", "00002"):
        write_image(tmp_path / "JPEGImages" / "480p" / "bear" / f"{frame}.jpg", size=(5, 4))
        write_palette_png(tmp_path / "Annotations" / "480p" / "bear" / f"{frame}.png", np.array([[0, 1, 2, 2, 0]] * 4))
    dataset = read_davis(tmp_path, "val")
    row = dataset[0]
    assert row["video"] == "bear" and row["num_objects"] == 2 and row["frame_names"] == ["00000", "00001", "00002"]
    assert len(row["frames"]) == 3 and row["frames"][0].size == (5, 4)
    np.testing.assert_array_equal(np.asarray(row["annotations"][2]), [[0, 1, 2, 2, 0]] * 4)

    (tmp_path / "Annotations" / "480p" / "bear" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample 0 \(video=bear\) refers to .*bear/00001.png"):
        read_davis(tmp_path, "val")

    for frame in (tmp_path / "JPEGImages" / "480p" / "bear").iterdir():
        frame.rename(frame.with_suffix(".png"))  # frames in the wrong format
    with pytest.raises(FileNotFoundError, match=r"DAVIS-2017 frames of bear: .*bear holds no .jpg frame"):
        read_davis(tmp_path, "val")


# --- Ref-YouTube-VOS / Ref-DAVIS -------------------------------------------------------------------------------------


def test_referring_video_reader(tmp_path):
    meta = {
        "videos": {
            "v1": {
                "frames": ["00000", "00005"],
                "expressions": {"0": {"exp": "a dog", "obj_id": "1"}, "1": {"exp": "a cat", "obj_id": "2"}},
            }
        }
    }
    write_json(tmp_path / "meta_expressions" / "valid" / "meta_expressions.json", meta)
    for frame in ("00000", "00005"):
        write_image(tmp_path / "valid" / "JPEGImages" / "v1" / f"{frame}.jpg")
    dataset = read_referring_video(tmp_path, "valid")
    assert dataset["expression"] == ["a dog", "a cat"] and dataset["object_id"] == [1, 2]
    assert dataset[0]["annotations"] == [] and len(dataset[0]["frames"]) == 2  # server-scored split: no annotations

    for frame in ("00000", "00005"):
        write_palette_png(tmp_path / "valid" / "Annotations" / "v1" / f"{frame}.png", np.array([[0, 1], [2, 0]]))
    with_annotations = read_referring_video(tmp_path, "valid")
    np.testing.assert_array_equal(np.asarray(with_annotations[1]["annotations"][1]), [[0, 1], [2, 0]])

    (tmp_path / "valid" / "JPEGImages" / "v1" / "00005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample 0 \(video=v1, expression_id=0\) refers to .*v1/00005.jpg"):
        read_referring_video(tmp_path, "valid")


def test_referring_video_missing_meta(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"meta_expressions file not found: .*meta_expressions/valid/meta_expressions.json"
    ):
        read_referring_video(tmp_path, "valid")


# --- ReVOS -----------------------------------------------------------------------------------------------------------


def write_revos(root):
    frames = ["f0", "f1"]
    for frame in frames:
        write_image(root / "JPEGImages" / "src" / "vid" / f"{frame}.jpg", size=(4, 3))
    object_a = square_mask(3, 4, 0, 0, 2)
    object_b = square_mask(3, 4, 1, 2, 2)
    write_json(
        root / "meta_expressions_valid_.json",
        {
            "videos": {
                "src/vid": {
                    "frames": frames,
                    "expressions": {
                        "0": {"exp": "the left one", "anno_id": [7], "obj_id": [0], "type_id": 0},
                        "1": {"exp": "what could roll?", "anno_id": [7, 8], "obj_id": [0, 1], "type_id": 1},
                    },
                }
            }
        },
    )
    write_json(
        root / "mask_dict.json", {"7": [encode_rle(object_a), None], "8": [encode_rle(object_b), encode_rle(object_b)]}
    )
    write_json(
        root / "mask_dict_foreground.json",
        {"src/vid": {"masks_rle": [encode_rle(object_a | object_b), encode_rle(object_b)]}},
    )
    return object_a, object_b


def test_revos_reader(tmp_path):
    object_a, object_b = write_revos(tmp_path)
    dataset = read_revos(tmp_path, "valid")
    assert dataset["type_id"] == [0, 1] and dataset["video"] == ["src/vid", "src/vid"]
    reference, foreground = revos_masks(dataset[1])
    np.testing.assert_array_equal(reference, np.stack([object_a | object_b, object_b]))
    np.testing.assert_array_equal(foreground, np.stack([object_a | object_b, object_b]))
    reference, _ = revos_masks(dataset[0])
    np.testing.assert_array_equal(reference, np.stack([object_a, np.zeros_like(object_a)]))  # None frame -> empty
    assert stored_path(dataset, "frames")[0] == {"bytes": None, "path": str(tmp_path / "JPEGImages/src/vid/f0.jpg")}


def test_revos_unknown_annotation(tmp_path):
    write_revos(tmp_path)
    write_json(tmp_path / "mask_dict.json", {"7": [None, None]})
    with pytest.raises(ValueError, match=r"expression src/vid/1 refers to annotation 8, absent from .*mask_dict.json"):
        read_revos(tmp_path, "valid")


# --- YouTube-VIS -----------------------------------------------------------------------------------------------------


def uncompressed_rle(mask):
    """Column-major run lengths starting with zeros, as the YouTube-VIS JSON stores masks."""
    flat = mask.T.reshape(-1).astype(int)
    runs, current, count = [], 0, 0
    for value in flat:
        if value == current:
            count += 1
        else:
            runs.append(count)
            current, count = value, 1
    runs.append(count)
    return {"size": list(mask.shape), "counts": runs}


def test_youtube_vis_reader(tmp_path):
    mask = square_mask(4, 6, 1, 2, 2)
    for name in ("v/00000.jpg", "v/00005.jpg"):
        write_image(tmp_path / "train" / "JPEGImages" / name, size=(6, 4))
    content = {
        "videos": [{"id": 3, "file_names": ["v/00000.jpg", "v/00005.jpg"], "height": 4, "width": 6, "length": 2}],
        "annotations": [
            {"id": 9, "video_id": 3, "category_id": 2, "iscrowd": 0, "segmentations": [uncompressed_rle(mask), None]}
        ],
        "categories": [{"id": 2, "name": "dog"}],
    }
    write_json(tmp_path / "train.json", content)
    dataset = read_youtube_vis(tmp_path, "train")
    instance = dataset[0]["instances"][0]
    assert instance["category_id"] == 2 and instance["segmentations"][1] is None
    np.testing.assert_array_equal(decode_rle(instance["segmentations"][0]), mask)
    assert youtube_vis_categories(tmp_path, "train") == [{"id": 2, "name": "dog"}]

    content["annotations"][0]["segmentations"] = [None]
    write_json(tmp_path / "train.json", content)
    with pytest.raises(ValueError, match=r"train.json: annotation 9 has 1 masks for 2 frames"):
        read_youtube_vis(tmp_path, "train")


def test_youtube_vis_without_annotations(tmp_path):
    write_image(tmp_path / "valid" / "JPEGImages" / "v" / "0.jpg")
    write_json(
        tmp_path / "valid.json",
        {"videos": [{"id": 1, "file_names": ["v/0.jpg"], "height": 8, "width": 10}], "categories": []},
    )
    dataset = read_youtube_vis(tmp_path, "valid")
    assert dataset[0]["instances"] == []
