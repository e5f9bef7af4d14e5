"""Writers of tiny synthetic benchmark layouts shared by the reader and runner tests."""

import json
import pickle

import numpy as np
from hyperseg.evaluation.masks import encode_rle
from PIL import Image


def write_image(path, size=(10, 8), value=0):
    """An RGB JPEG of `size` (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def write_json(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def square_mask(height, width, top, left, size):
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def write_refcoco(root, refs_format="pickle"):
    image_name = "COCO_train2014_000000000001.jpg"
    write_image(root / "images" / "train2014" / image_name)
    rle_square = encode_rle(square_mask(8, 10, 5, 6, 2))
    instances = {
        "images": [{"id": 1, "file_name": image_name, "height": 8, "width": 10}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]},
            {"id": 12, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": rle_square},
            {
                "id": 13,
                "image_id": 1,
                "category_id": 2,
                "iscrowd": 1,
                "segmentation": encode_rle(np.ones((8, 10), bool)),
            },
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    sentence = lambda sent_id, text: {"sent_id": sent_id, "sent": text, "raw": text.upper(), "tokens": text.split()}  # noqa: E731
    if refs_format == "pickle":
        refs = [
            {
                "ref_id": 0,
                "image_id": 1,
                "ann_id": 11,
                "split": "val",
                "category_id": 1,
                "sentences": [sentence(100, "left box"), sentence(101, "the top one")],
            },
            {
                "ref_id": 1,
                "image_id": 1,
                "ann_id": 12,
                "split": "testA",
                "category_id": 2,
                "sentences": [sentence(102, "small")],
            },
        ]
        (root / "refcoco").mkdir(parents=True)
        with open(root / "refcoco" / "refs(unc).p", "wb") as file:
            pickle.dump(refs, file, protocol=2)
        write_json(root / "refcoco" / "instances.json", instances)
    else:
        refs = [
            {
                "ref_id": 0,
                "image_id": 1,
                "ann_id": [-1],
                "split": "val",
                "category_id": [],
                "no_target": True,
                "sentences": [sentence(200, "the dragon")],
            },
            {
                "ref_id": 1,
                "image_id": 1,
                "ann_id": [11, 12, 13],
                "split": "val",
                "category_id": [1, 2],
                "no_target": False,
                "sentences": [sentence(201, "all of them")],
            },
        ]
        write_json(root / "grefcoco" / "grefs(unc).json", refs)
        write_json(root / "grefcoco" / "instances.json", instances)


def write_coco_panoptic(root):
    id_map = np.array([[0, 300, 300], [70000, 70000, 5]])
    color = np.stack([id_map % 256, id_map // 256 % 256, id_map // 65536], axis=-1).astype(np.uint8)
    (root / "panoptic_val2017").mkdir(parents=True)
    Image.fromarray(color).save(root / "panoptic_val2017" / "0001.png")
    write_image(root / "val2017" / "0001.jpg", size=(3, 2))
    write_json(
        root / "annotations" / "panoptic_val2017.json",
        {
            "images": [{"id": 1, "file_name": "0001.jpg", "height": 2, "width": 3}],
            "annotations": [
                {
                    "image_id": 1,
                    "file_name": "0001.png",
                    "segments_info": [
                        {"id": 300, "category_id": 1, "iscrowd": 0, "area": 2},
                        {"id": 70000, "category_id": 2, "iscrowd": 1, "area": 2},
                        {"id": 5, "category_id": 2, "iscrowd": 0, "area": 1},
                    ],
                },
            ],
            "categories": [{"id": 1, "name": "person", "isthing": 1}, {"id": 2, "name": "sky", "isthing": 0}],
        },
    )
    return id_map


def write_coco_instances(root):
    """Two 8x10 images: the first with a person polygon, a person crowd region (uncompressed RLE) and a dog given as
    compressed RLE; the second without annotations. Returns the annotation file's path."""
    for name in ("0001.jpg", "0002.jpg"):
        write_image(root / "val2017" / name, size=(10, 8))
    crowd = np.asfortranarray(square_mask(8, 10, 5, 6, 3).astype(np.uint8))
    runs, previous, length = [], 0, 0
    for value in crowd.flatten(order="F"):  # uncompressed RLE: alternating run lengths in column-major order
        if value != previous:
            runs.append(length)
            previous, length = value, 0
        length += 1
    runs.append(length)
    return write_json(
        root / "annotations" / "instances_val2017.json",
        {
            "images": [
                {"id": 1, "file_name": "0001.jpg", "height": 8, "width": 10},
                {"id": 7, "file_name": "0002.jpg", "height": 8, "width": 10},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 12.0, "bbox": [1, 1, 4, 3],
                 "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
                {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 9.0, "bbox": [6, 5, 3, 3],
                 "segmentation": {"size": [8, 10], "counts": runs}},
                {"id": 3, "image_id": 1, "category_id": 18, "iscrowd": 0, "area": 4.0, "bbox": [7, 0, 2, 2],
                 "segmentation": encode_rle(square_mask(8, 10, 0, 7, 2))},
            ],
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        },
    )


def write_ade(root, names=150):
    base = root / "ADEChallengeData2016"
    for stem in ("ADE_val_1", "ADE_val_2"):
        write_image(base / "images" / "validation" / f"{stem}.jpg", size=(4, 3))
        (base / "annotations_detectron2" / "validation").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.array([[0, 1, 149, 255]] * 3, dtype=np.uint8)).save(
            base / "annotations_detectron2" / "validation" / f"{stem}.png"
        )
    lines = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i + 1}\t0.1\t1\t1\tname{i};alias{i}" for i in range(names)]
    (base / "objectInfo150.txt").write_text("\n".join(lines) + "\n")


def write_refcoco_split(root, num_refs, seed=0):
    """A RefCOCO `val` split of `num_refs` refs (two sentences each) with random box masks over three image sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(12, 16), (9, 9), (20, 14)]
    images, annotations, refs = [], [], []
    for image_id, (height, width) in enumerate(sizes, start=1):
        name = f"COCO_train2014_{image_id:012d}.jpg"
        write_image(root / "images" / "train2014" / name, size=(width, height), value=40 * image_id)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
    for ref_id in range(num_refs):
        image = images[ref_id % len(images)]
        top, left = int(rng.integers(0, image["height"] - 2)), int(rng.integers(0, image["width"] - 2))
        mask = np.zeros((image["height"], image["width"]), dtype=bool)
        mask[top : top + int(rng.integers(1, 6)), left : left + int(rng.integers(1, 6))] = True
        annotations.append(
            {
                "id": 1000 + ref_id,
                "image_id": image["id"],
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": encode_rle(mask),
            }
        )
        sentences = [
            {"sent_id": 2 * ref_id + k, "sent": f"object {ref_id} take {k}", "raw": f"Object {ref_id}"}
            for k in range(2)
        ]
        refs.append(
            {
                "ref_id": ref_id,
                "image_id": image["id"],
                "ann_id": 1000 + ref_id,
                "split": "val",
                "sentences": sentences,
            }
        )
    (root / "refcoco").mkdir(parents=True)
    with open(root / "refcoco" / "refs(unc).p", "wb") as file:
        pickle.dump(refs, file, protocol=2)
    write_json(
        root / "refcoco" / "instances.json", {"images": images, "annotations": annotations, "categories": [{"id": 1}]}
    )


# --- video benchmarks ------------------------------------------------------------------------------------------------

VIDEO_SIZE = (12, 16)  # (height, width) of the synthetic video frames


def write_palette_png(path, array):
    """A palette PNG whose pixel values are `array` (object ids), as the DAVIS annotations are stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12))
    image.save(path)


def object_ids(num_objects, frame, size=VIDEO_SIZE):
    """The id map of frame `frame`: object k is a 3x4 block in row band k, moving right by one pixel per frame."""
    ids = np.zeros(size, dtype=np.uint8)
    for object_id in range(1, num_objects + 1):
        top, left = 4 * (object_id - 1), (2 * object_id + frame) % (size[1] - 4)
        ids[top : top + 3, left : left + 4] = object_id
    return ids


def write_video_frames(frame_dir, annotation_dir, frame_names, num_objects):
    """JPEG frames (object k painted grey 80 * k) and, unless `annotation_dir` is None, their id-map PNGs."""
    id_maps = []
    for frame, name in enumerate(frame_names):
        ids = object_ids(num_objects, frame)
        id_maps.append(ids)
        frame_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.repeat((80 * ids)[..., None], 3, axis=-1).astype(np.uint8)).save(frame_dir / f"{name}.jpg")
        if annotation_dir is not None:
            write_palette_png(annotation_dir / f"{name}.png", ids)
    return id_maps


def write_davis(root, videos):
    """DAVIS-2017 `val` with `videos` = {name: (num_frames, num_objects)}; returns {name: [id map per frame]}."""
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("".join(f"{video}\n" for video in videos))
    return {
        video: write_video_frames(
            root / "JPEGImages" / "480p" / video,
            root / "Annotations" / "480p" / video,
            [f"{frame:05d}" for frame in range(num_frames)],
            num_objects,
        )
        for video, (num_frames, num_objects) in videos.items()
    }


def write_referring_video(root, videos, split="valid", annotations=True):
    """
    A Ref-YouTube-VOS / Ref-DAVIS split: `videos` = {name: (num_frames, num_objects, [(expression, obj_id), ...])},
    frames named every 5th as in Ref-YouTube-VOS. Returns {name: [id map per frame]}.
    """
    meta, id_maps = {"videos": {}}, {}
    for video, (num_frames, num_objects, expressions) in videos.items():
        frame_names = [f"{5 * frame:05d}" for frame in range(num_frames)]
        expressions = {str(index): {"exp": text, "obj_id": str(obj)} for index, (text, obj) in enumerate(expressions)}
        meta["videos"][video] = {"frames": frame_names, "expressions": expressions}
        frame_dir = root / split / "JPEGImages" / video
        annotation_dir = root / split / "Annotations" / video if annotations else None
        id_maps[video] = write_video_frames(frame_dir, annotation_dir, frame_names, num_objects)
    write_json(root / "meta_expressions" / split / "meta_expressions.json", meta)
    return id_maps


def write_revos_videos(root, videos):
    """
    A ReVOS `valid` split: `videos` = {name: (num_frames, num_objects, [(expression, [object ids], type_id), ...])};
    annotation `100 * video index + k` is object k. Returns {name: [id map per frame]}.
    """
    meta, mask_dict, foreground, id_maps = {"videos": {}}, {}, {}, {}
    for video_index, (video, (num_frames, num_objects, expressions)) in enumerate(videos.items()):
        frame_names = [f"f{frame}" for frame in range(num_frames)]
        id_maps[video] = write_video_frames(root / "JPEGImages" / video, None, frame_names, num_objects)
        for object_id in range(1, num_objects + 1):
            mask_dict[str(100 * video_index + object_id)] = [encode_rle(ids == object_id) for ids in id_maps[video]]
        foreground[video] = {"masks_rle": [encode_rle(ids > 0) for ids in id_maps[video]]}
        meta["videos"][video] = {
            "frames": frame_names,
            "expressions": {
                str(index): {"exp": text, "anno_id": [100 * video_index + obj for obj in objects], "type_id": type_id}
                for index, (text, objects, type_id) in enumerate(expressions)
            },
        }
    write_json(root / "meta_expressions_valid_.json", meta)
    write_json(root / "mask_dict.json", mask_dict)
    write_json(root / "mask_dict_foreground.json", foreground)
    return id_maps
