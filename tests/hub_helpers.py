"""Helpers of the Hub / pipeline tests: a tiny random HyperSeg with its processor, images, a package-free Python and
the remote-code client run in it."""

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_fixture
from PIL import Image
from remote_code_client import load, record
from tiny_config import tiny_hyperseg_config

from hyperseg.conversion.convert_hyperseg_to_hf import build_processor, convert_tokenizer
from hyperseg.modeling import HyperSegForUniversalSegmentation, HyperSegSegmentationPipeline
from hyperseg.processing import HyperSegImageProcessor, HyperSegProcessor

TINY_CLASS_NAMES = ["person", "dog", "grass", "sky"]
CLIENT = Path(__file__).with_name("remote_code_client.py")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """
    Runs a test module's tiny models on one intra-op thread (restored afterwards): they gain nothing from more, and on
    a busy machine OpenMP's waiting threads made one tiny forward pass ~80x slower (3 s instead of 0.04 s).
    Import it into a test module to apply it there.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model_and_processor(seed: int = 0, class_names: list[str] = TINY_CLASS_NAMES):
    """A randomly initialised tiny HyperSeg, its processor (the golden-data tokenizer), and a default vocabulary."""
    tokenizer, _ = convert_tokenizer(require_fixture("original_tiny", "checkpoint"))
    config = tiny_hyperseg_config()
    processor = build_processor(config, tokenizer, "hyperseg")
    processor.set_default_vocabulary(config, class_names)
    torch.manual_seed(seed)
    model = HyperSegForUniversalSegmentation(config).eval()
    return model, processor


def random_image(height: int, width: int, seed: int = 0) -> Image.Image:
    """A smooth random RGB image (blurry blobs rather than noise, so that masks are not all speckles)."""
    generator = np.random.default_rng(seed)
    small = generator.integers(0, 256, size=(max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def run_without_package(arguments: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    """
    Runs `python -I -S` with only the interpreter's site-packages directories on `sys.path` (a virtual
    environment's and, where it includes them, the base interpreter's), their `.pth` files unread: the editable install of `hyperseg` (a `.pth` import hook) is then invisible, as for a user who only has
    transformers. It uses this process's number of torch threads, so that float reductions round alike and outputs
    can be compared bit for bit. Returns stdout; raises with the output on a non-zero exit.
    """
    site_directories = [directory for directory in site.getsitepackages() if Path(directory).is_dir()]
    bootstrap = (
        f"import sys; sys.path.extend({site_directories!r}); sys.argv = sys.argv[1:]; "
        "import runpy; runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", bootstrap, *arguments],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": str(torch.get_num_threads()), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"package-free process failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def place_in_hub_cache(folder: Path, hf_home: Path, repo_id: str) -> None:
    """Lays `folder` out as a downloaded snapshot of `repo_id` in the Hub cache under `hf_home`."""
    repo_cache = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo_cache / "snapshots" / COMMIT)
    (repo_cache / "refs").mkdir()
    (repo_cache / "refs" / "main").write_text(COMMIT)


def run_client(tmp_path: Path, hf_home: Path, sources: list[str], *options: str) -> dict:
    """Runs `remote_code_client.py` without the package, offline; returns its results."""
    image_file = tmp_path / "image.png"
    random_image(48, 64, seed=3).save(image_file)
    output = tmp_path / "records.pt"
    run_without_package(
        [str(CLIENT), str(output), str(image_file), *sources, *options],
        cwd=tmp_path,
        env={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"},
    )
    return torch.load(output)


def assert_records_identical(actual: dict, expected: dict, source: str) -> None:
    assert actual.keys() == expected.keys(), f"{source}: different outputs recorded"
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(actual[key], value), f"{source}: {key} differs from the package's"
        else:
            assert actual[key] == value, f"{source}: {key} is {actual[key]}, the package gives {value}"


def check_remote_results(results: dict, expected: dict, sources: list[str]) -> None:
    """Every source loaded as remote code (never the package) and computed exactly what the package computes."""
    assert sorted(results["records"]) == sorted(sources)
    for source, classes in results["classes"].items():
        for entry_point, class_path in classes.items():
            assert class_path.startswith("transformers_modules."), f"{source}: {entry_point} loaded {class_path}"
        model_classes = {
            classes[name]
            for name in ("AutoModelForUniversalSegmentation", "AutoModel", "AutoModelForImageSegmentation")
        }
        assert len(model_classes) == 1 and model_classes.pop().endswith(
            "modeling_hyperseg.HyperSegForUniversalSegmentation"
        )
        assert classes["pipeline"].endswith("pipeline_hyperseg.HyperSegSegmentationPipeline")
    for source, records in results["records"].items():
        assert_records_identical(records, expected, source)


def native_records(folder: Path, image_file: Path) -> dict:
    """What the package computes from `folder` (native classes, no remote code)."""
    objects = load(str(folder), trust_remote_code=None, pipeline_class=HyperSegSegmentationPipeline)
    assert type(objects["AutoModel"]) is HyperSegForUniversalSegmentation
    assert type(objects["AutoProcessor"]) is HyperSegProcessor
    assert type(objects["AutoImageProcessor"]) is HyperSegImageProcessor
    return record(objects, Image.open(image_file))


def check_without_package(tmp_path: Path, folder: Path, repo_id: str, hub_folder: Path | None = None) -> None:
    """
    `folder` loaded from its path, and `hub_folder` (default: `folder` itself) by `repo_id` from an offline Hub cache,
    in a package-free process: every entry point loads remote code and computes exactly what the package computes
    from `folder`, referring mask logits included.
    """
    hf_home = tmp_path / "hf_home"
    place_in_hub_cache(hub_folder if hub_folder is not None else folder, hf_home, repo_id)
    results = run_client(tmp_path, hf_home, [str(folder), repo_id])
    expected = native_records(folder, tmp_path / "image.png")
    assert "model/referring/masks_queries_logits" in expected, sorted(expected)
    check_remote_results(results, expected, [str(folder), repo_id])
