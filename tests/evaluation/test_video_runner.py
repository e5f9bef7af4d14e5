"""
The video benchmarks of the evaluation runner (DAVIS-17, Ref-DAVIS-17, Ref-YouTube-VOS, ReVOS) on tiny synthetic
layouts: reports recompute from the per-video records and agree with the metrics computed independently on whole
videos; a killed run resumes to the same report; the runner's masks are those of a direct `segment_video` call on the
tiny model; bad input gets an error naming the file.
"""

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hyperseg.evaluation.metrics import aggregate_revos, compute_video, revos_sample_statistics
from hyperseg.evaluation.readers import read_revos, revos_masks
from hyperseg.evaluation.runner import aggregate_records, format_table, per_sample_results_path, run_benchmark
from layouts import VIDEO_SIZE, object_ids, write_davis, write_palette_png, write_referring_video, write_revos_videos
from PIL import Image
from test_runner import read_jsonl

DAVIS_VIDEOS = {"bear": (4, 2), "car": (3, 1), "dog": (5, 2)}


def annotation_of(frame_path) -> np.ndarray:
    """The id map the synthetic layout wrote for a frame (what the fake model "sees")."""
    return np.asarray(Image.open(str(frame_path).replace("JPEGImages", "Annotations").replace(".jpg", ".png")))


def fuse(masks) -> np.ndarray:
    """Object k + 1 = masks[k], the first mask winning where they overlap (argmax over background and objects)."""
    stacked = np.concatenate([np.full((1, *masks[0].shape), 0.5), np.stack(masks).astype(float)])
    return np.argmax(stacked, axis=0)


def fake_masks(frame, prompts, task) -> list:
    """
    A deterministic fake model. Interactive: object k is the frame's foreground inside its first-frame prompt's row
    band, shifted right by k pixels. Text: "object k" is the annotated object k, "nothing" an empty mask, and any other
    text the frame's foreground shifted right by the prompt's index.
    """
    foreground = np.asarray(Image.open(frame).convert("L")) > 40
    if task == "interactive":
        return [
            np.roll(foreground & prompt["mask"].any(axis=1, keepdims=True), index, axis=1)
            for index, prompt in enumerate(prompts)
        ]
    masks = []
    for index, prompt in enumerate(prompts):
        if prompt.startswith("object "):
            masks.append(annotation_of(frame) == int(prompt.split()[1]))
        elif prompt == "nothing":
            masks.append(np.zeros_like(foreground))
        else:
            masks.append(np.roll(foreground, index, axis=1))
    return masks


class FakeVideoModel:
    """`segment_video` of the fake model; records the videos it was asked about and can be killed in a video."""

    def __init__(self, kill_in_video=None):
        self.videos, self.kill_in_video = [], kill_in_video

    def segment_video(self, frames, prompts, task, max_batch_size=None):
        self.videos.append(Path(frames[0]).parent.name)
        for position, frame in enumerate(frames):
            if len(self.videos) == self.kill_in_video and position == 1:
                raise KeyboardInterrupt("simulated kill")
            yield fake_masks(frame, prompts, task)


def check_recomputes(report, output):
    """The report's numbers are those `aggregate_records` computes from the per-video records alone."""
    assert json.loads(Path(output).read_text()) == report
    header, records = read_jsonl(per_sample_results_path(output))
    assert header["benchmark"] == report["benchmark"] and len(records) == report["num_samples"]
    assert [record["index"] for record in records] == list(range(len(records)))
    assert aggregate_records(report["metric"], records, report["context"]) == report["metrics"]
    return records


# --- scores: recomputed from the records and, independently, on whole videos -----------------------------------------


def test_davis_report_recomputes_and_matches_whole_video_metrics(tmp_path):
    id_maps = write_davis(tmp_path / "davis", DAVIS_VIDEOS)
    output = tmp_path / "davis.json"
    report = run_benchmark("davis", tmp_path / "davis", FakeVideoModel(), output, progress=False)
    records = check_recomputes(report, output)
    assert [record["id"] for record in records] == ["video=bear", "video=car", "video=dog"]
    assert [len(record["statistics"]["objects"][0]["J"]) for record in records] == [2, 1, 3]  # frames 1..T-2

    predictions, references = [], []
    for video, maps in id_maps.items():
        frames = sorted((tmp_path / "davis" / "JPEGImages" / "480p" / video).glob("*.jpg"))
        prompts = [{"mask": maps[0] == k} for k in range(1, DAVIS_VIDEOS[video][1] + 1)]
        fused = np.stack([fuse(fake_masks(frame, prompts, "interactive")) for frame in frames])[1:-1]
        for k in range(1, len(prompts) + 1):
            predictions.append(fused == k)
            references.append(np.stack(maps)[1:-1] == k)
    assert report["metrics"] == compute_video(predictions, references)
    assert 0 < report["metrics"]["J"] < 1 and "frames 1..T-2" in report["definitions"]["protocol"]


def test_ref_davis_scores_each_annotator_after_matching_ids(tmp_path):
    # meta order lists object 2 first, so its expressions get predicted id 1: only the toolkit's matching pairs them
    expressions = [("object 2", 2), ("object 2", 2), ("object 1", 1), ("nothing", 1)]
    write_referring_video(tmp_path / "refdavis", {"v1": (4, 2, expressions)})
    output = tmp_path / "refdavis.json"
    report = run_benchmark("ref_davis", tmp_path / "refdavis", FakeVideoModel(), output, progress=False)
    [record] = check_recomputes(report, output)
    annotators = record["statistics"]["annotators"]
    assert [annotator["expression_ids"] for annotator in annotators] == [["0", "2"], ["1", "3"]]
    assert np.asarray(annotators[0]["J"]).shape == (2, 2, 4)  # predicted id x ground-truth object x frame

    # annotator 0 is right on both objects; annotator 1 finds object 2 and predicts nothing for object 1
    perfect = {"J": 1.0, "F": 1.0, "J&F": 1.0, "J_recall": 1.0, "F_recall": 1.0, "J_decay": 0.0, "F_decay": 0.0}
    half = {"J": 0.5, "F": 0.5, "J&F": 0.5, "J_recall": 0.5, "F_recall": 0.5, "J_decay": 0.0, "F_decay": 0.0}
    assert report["metrics"] == {
        **{key: (perfect[key] + half[key]) / 2 for key in perfect},
        "per_annotator": [perfect, half],
    }


def test_ref_youtube_vos_with_annotations_scores_every_frame(tmp_path):
    write_referring_video(
        tmp_path / "ytvos", {"v1": (3, 2, [("object 1", 1), ("nothing", 2)]), "v2": (2, 1, [("x", 1)])}
    )
    output = tmp_path / "ytvos.json"
    report = run_benchmark("ref_youtube_vos", tmp_path / "ytvos", FakeVideoModel(), output, progress=False)
    records = check_recomputes(report, output)
    expressions = [expression for record in records for expression in record["statistics"]["expressions"]]
    assert [len(expression["J"]) for expression in expressions] == [3, 3, 2]  # every frame
    assert expressions[0] == {"expression_id": "0", "object_id": 1, "J": [1.0] * 3, "F": [1.0] * 3}
    assert expressions[1]["J"] == [0.0] * 3
    assert 0.5 < report["metrics"]["J"] < 1


def test_ref_youtube_vos_valid_writes_the_submission(tmp_path):
    write_referring_video(
        tmp_path / "ytvos", {"v1": (3, 2, [("a", 1), ("b", 2)]), "v2": (2, 1, [("c", 1)])}, annotations=False
    )
    output = tmp_path / "out" / "valid.json"
    report = run_benchmark("ref_youtube_vos", tmp_path / "ytvos", FakeVideoModel(), output, progress=False)
    check_recomputes(report, output)
    assert report["metrics"] == {} and "submission" in report["definitions"]
    assert report["submission"] == str(tmp_path / "out" / "valid.predictions" / "submission.zip")
    assert "scored by the challenge server" in format_table(report)

    with zipfile.ZipFile(report["submission"]) as archive:
        names = sorted(archive.namelist())
        expected = [f"Annotations/v1/{e}/{5 * f:05d}.png" for e in "01" for f in range(3)]
        assert names == expected + ["Annotations/v2/0/00000.png", "Annotations/v2/0/00005.png"]
        frame = tmp_path / "ytvos" / "valid" / "JPEGImages" / "v1" / "00005.jpg"
        with archive.open("Annotations/v1/1/00005.png") as png:
            written = np.asarray(Image.open(png))
    assert written.dtype == np.uint8 and set(np.unique(written)) <= {0, 255} and written.shape == VIDEO_SIZE
    np.testing.assert_array_equal(written == 255, fake_masks(frame, ["a", "b"], "referring_video")[1])


REVOS_VIDEOS = {
    "src/v1": (3, 2, [("the top one", [1], 0), ("what rolls?", [1, 2], 1)]),
    "src/v2": (2, 1, [("it", [1], 0), ("why(s)", [1], 1)]),
}


def test_revos_report_recomputes_and_matches_whole_video_metrics(tmp_path):
    write_revos_videos(tmp_path / "revos", REVOS_VIDEOS)
    output = tmp_path / "revos.json"
    report = run_benchmark("revos", tmp_path / "revos", FakeVideoModel(), output, progress=False)
    check_recomputes(report, output)

    whole_video = []
    for row in read_revos(tmp_path / "revos", "valid"):
        prompts = [expression for expression, _, _ in REVOS_VIDEOS[row["video"]][2]]
        frames = [tmp_path / "revos" / "JPEGImages" / row["video"] / f"{name}.jpg" for name in row["frame_names"]]
        position = prompts.index(row["expression"])
        prediction = np.stack([fake_masks(frame, prompts, "reasoning_video")[position] for frame in frames])
        statistics = revos_sample_statistics(prediction, *revos_masks(row), index=0)
        whole_video.append({**statistics, "type_id": row["type_id"]})
    assert report["metrics"] == aggregate_revos(whole_video)
    assert set(report["metrics"]) == {"referring", "reason", "overall"} and "overall" in report["definitions"]


# --- resuming ----------------------------------------------------------------------------------------------------------


def test_resume_after_a_kill_gives_the_same_report(tmp_path):
    write_davis(tmp_path / "davis", DAVIS_VIDEOS)
    uninterrupted = run_benchmark(
        "davis", tmp_path / "davis", FakeVideoModel(), tmp_path / "a" / "r.json", progress=False
    )

    output = tmp_path / "b" / "r.json"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark("davis", tmp_path / "davis", FakeVideoModel(kill_in_video=2), output, progress=False)
    results_path = per_sample_results_path(output)
    assert [record["id"] for record in read_jsonl(results_path)[1]] == ["video=bear"] and not output.exists()
    with open(results_path, "a") as file:
        file.write('{"index": 1, "id": "video=car", "statis')  # a line torn by the kill

    resumed_model = FakeVideoModel()
    resumed = run_benchmark("davis", tmp_path / "davis", resumed_model, output, progress=False)
    assert resumed_model.videos == ["car", "dog"]  # only the videos without a record
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert read_jsonl(results_path)[1] == read_jsonl(per_sample_results_path(tmp_path / "a" / "r.json"))[1]

    with pytest.raises(ValueError, match="holds results of another evaluation"):  # e.g. another --limit
        run_benchmark("davis", tmp_path / "davis", FakeVideoModel(), output, limit=1, progress=False)


# --- bad input ---------------------------------------------------------------------------------------------------------


def test_missing_video_folder_frame_or_annotation_is_named(tmp_path):
    write_davis(tmp_path / "davis", {"bear": (3, 1)})
    (tmp_path / "davis" / "ImageSets" / "2017" / "val.txt").write_text("bear\nghost\n")
    with pytest.raises(FileNotFoundError, match=r"frames of ghost not found: .*JPEGImages/480p/ghost"):
        run_benchmark("davis", tmp_path / "davis", FakeVideoModel(), tmp_path / "r.json", progress=False)

    write_davis(tmp_path / "davis2", {"bear": (3, 1)})
    (tmp_path / "davis2" / "Annotations" / "480p" / "bear" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"video=bear\) refers to .*Annotations/480p/bear/00002.png"):
        run_benchmark("davis", tmp_path / "davis2", FakeVideoModel(), tmp_path / "r.json", progress=False)

    write_referring_video(tmp_path / "ytvos", {"v1": (3, 1, [("a", 1)])})
    (tmp_path / "ytvos" / "valid" / "JPEGImages" / "v1" / "00010.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"video=v1, expression_id=0\) refers to .*JPEGImages/v1/00010.jpg"):
        run_benchmark("ref_youtube_vos", tmp_path / "ytvos", FakeVideoModel(), tmp_path / "r.json", progress=False)
    assert not per_sample_results_path(tmp_path / "r.json").exists()  # refused before anything was written


def test_bad_annotations_are_named(tmp_path):
    write_davis(tmp_path / "davis", {"bear": (3, 2), "car": (3, 1)})
    first = tmp_path / "davis" / "Annotations" / "480p" / "car" / "00000.png"
    write_palette_png(first, np.where(object_ids(2, 0) == 1, 0, object_ids(2, 0)))  # object 1 missing, object 2 there
    output = tmp_path / "r.json"
    with pytest.raises(ValueError, match=rf"video car: object 1 is absent from the first annotation {first}"):
        run_benchmark("davis", tmp_path / "davis", FakeVideoModel(), output, progress=False)
    assert [record["id"] for record in read_jsonl(per_sample_results_path(output))[1]] == ["video=bear"]  # kept

    write_referring_video(tmp_path / "ytvos", {"v1": (3, 1, [("a", 1)])})
    small = tmp_path / "ytvos" / "valid" / "Annotations" / "v1" / "00005.png"
    write_palette_png(small, np.zeros((4, 4)))
    with pytest.raises(
        ValueError, match=rf"video v1: annotation {small} is 4x4 \(width x height\) but frame 1 is 16x12"
    ):
        run_benchmark("ref_youtube_vos", tmp_path / "ytvos", FakeVideoModel(), tmp_path / "y.json", progress=False)


# --- the tiny model: the runner's masks are those of segment_video ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_predictor(tmp_path_factory):
    """A seeded random tiny HyperSeg checkpoint, loaded the way the command line loads one."""
    torch = pytest.importorskip("torch")
    from conftest import REPO_ROOT
    from hyperseg.evaluation.runner import HyperSegPredictor
    from hyperseg.modeling import HyperSegForUniversalSegmentation
    from hyperseg.processing import HyperSegProcessor

    tiny, folder = REPO_ROOT / "checkpoints" / "hyperseg-tiny-random", tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = HyperSegForUniversalSegmentation.config_class.from_pretrained(tiny)
    HyperSegForUniversalSegmentation(config).save_pretrained(folder)
    HyperSegProcessor.from_pretrained(tiny).save_pretrained(folder)
    return folder, HyperSegPredictor(str(folder), device="cpu")


def test_revos_masks_and_records_equal_a_direct_segment_video_call(tiny_predictor, tmp_path):
    from hyperseg import segment_video

    _, predictor = tiny_predictor
    write_revos_videos(tmp_path / "revos", REVOS_VIDEOS)
    report = run_benchmark(
        "revos", tmp_path / "revos", predictor, tmp_path / "r.json", progress=False, predictions_dir=tmp_path / "pred"
    )
    _, records = read_jsonl(per_sample_results_path(tmp_path / "r.json"))
    assert report["num_samples"] == 2
    for record, (video, (_, _, expressions)) in zip(records, REVOS_VIDEOS.items()):
        frames = sorted((tmp_path / "revos" / "JPEGImages" / video).glob("*.jpg"))
        texts = [text for text, _, _ in expressions]
        tracks = segment_video(
            predictor.model, predictor.processor, frames, text=texts, task="reasoning_video", progress=False
        )
        rows = [row for row in read_revos(tmp_path / "revos", "valid") if row["video"] == video]
        for index, (track, row, recorded) in enumerate(zip(tracks, rows, record["statistics"]["expressions"])):
            for entry, frame in zip(track, frames):
                png = tmp_path / "pred" / "Annotations" / video / str(index) / f"{frame.stem}.png"
                np.testing.assert_array_equal(np.asarray(Image.open(png)) == 255, entry["mask"])
            whole_video = revos_sample_statistics(
                np.stack([entry["mask"] for entry in track]), *revos_masks(row), index=0
            )
            assert recorded == {"expression_id": str(index), "type_id": row["type_id"], **whole_video}


def test_davis_command_line_masks_equal_a_direct_segment_video_call(tiny_predictor, tmp_path, capsys):
    from hyperseg import segment_video
    from hyperseg.evaluation.__main__ import main

    folder, predictor = tiny_predictor
    id_maps = write_davis(tmp_path / "davis", {"bear": (3, 2), "car": (3, 1)})
    output = tmp_path / "report.json"
    arguments = ["--benchmark", "davis", "--data-root", str(tmp_path / "davis"), "--model", str(folder)]
    main(arguments + ["--output", str(output), "--predictions-dir", str(tmp_path / "pred"), "--device", "cpu"])

    report = json.loads(output.read_text())
    check_recomputes(report, output)
    printed = capsys.readouterr().out
    assert "davis val (2 videos)" in printed and "J&F" in printed
    for video, maps in id_maps.items():
        frames = sorted((tmp_path / "davis" / "JPEGImages" / "480p" / video).glob("*.jpg"))
        prompts = [{"mask": maps[0] == k} for k in range(1, int(maps[0].max()) + 1)]
        tracks = segment_video(
            predictor.model, predictor.processor, frames, task="interactive", visual_prompts=prompts, progress=False
        )
        for position, frame in enumerate(frames):
            written = np.asarray(Image.open(tmp_path / "pred" / video / f"{frame.stem}.png"))
            np.testing.assert_array_equal(written, fuse([track[position]["mask"] for track in tracks]))


def test_an_unreadable_frame_is_named_and_earlier_videos_are_kept(tiny_predictor, tmp_path):
    _, predictor = tiny_predictor
    write_davis(tmp_path / "davis", {"bear": (3, 1), "car": (3, 1)})
    broken = tmp_path / "davis" / "JPEGImages" / "480p" / "car" / "00001.jpg"
    broken.write_bytes(b"not a jpeg")
    output = tmp_path / "r.json"
    with pytest.raises(ValueError, match=rf"davis val, video car: .*cannot read frame 1 from {broken}"):
        run_benchmark("davis", tmp_path / "davis", predictor, output, progress=False)
    assert [record["id"] for record in read_jsonl(per_sample_results_path(output))[1]] == ["video=bear"]


# --- the interactive session's prompts ----------------------------------------------------------------------------------


def test_propagated_prompts_keep_the_last_usable_mask():
    from conftest import REPO_ROOT
    from hyperseg.processing import HyperSegProcessor
    from hyperseg.video import PropagatedVisualPrompts

    processor = HyperSegProcessor.from_pretrained(REPO_ROOT / "checkpoints" / "hyperseg-tiny-random")
    height, width = 480, 854
    speck = np.zeros((height, width), dtype=bool)
    speck[100, 100] = True  # vanishes on the 56x56 vision-tower grid: the processor would refuse it as a prompt
    image = Image.new("RGB", (width, height))
    with pytest.raises(ValueError, match="covers no pixel once resized"):
        processor(images=image, visual_prompts=[{"mask": speck}], task="interactive")

    box, moved = {"box": [0, 0, 50, 50]}, np.zeros((height, width), dtype=bool)
    moved[200:260, 300:400] = True
    prompts = PropagatedVisualPrompts([box, box, box], processor.image_processor)
    prompts.update([np.zeros((height, width), dtype=bool), speck, moved])
    assert prompts.current[:2] == [box, box] and prompts.current[2]["mask"] is moved
    assert prompts.processor_kwargs([2, 0]) == {"visual_prompts": [[prompts.current[2]], [box]]}
    with pytest.raises(ValueError, match="needs `visual_prompts`, a non-empty list"):
        PropagatedVisualPrompts([], processor.image_processor)


@pytest.mark.parametrize(
    "perceiver_type, text, task, message",
    [
        ("object_aware", None, "interactive", r"follows objects with HyperSeg's TemporalLatents .* 'object_aware'"),
        ("fine_grained", "the dog", "interactive", r"follows `visual_prompts`, not `text`"),
        ("fine_grained", "the dog", "referring_video", r"followed by task 'interactive', not 'referring_video'"),
    ],
)
def test_interactive_sessions_refuse_what_they_cannot_follow(perceiver_type, text, task, message):
    from conftest import REPO_ROOT
    from hyperseg.processing import HyperSegProcessor
    from hyperseg.video import VideoSession

    processor = HyperSegProcessor.from_pretrained(REPO_ROOT / "checkpoints" / "hyperseg-tiny-random")
    model = SimpleNamespace(config=SimpleNamespace(perceiver_type=perceiver_type))
    with pytest.raises(ValueError, match=message):
        VideoSession(model, processor, text, task, visual_prompts=[{"box": [0, 0, 4, 4]}])
