"""Helpers of the Hub / pipeline tests: a tiny random HyperSeg with its processor, images, a package-free Python."""

import os
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_fixture
from PIL import Image
from tiny_config import tiny_hyperseg_config

from hyperseg.conversion.convert_hyperseg_to_hf import build_processor, convert_tokenizer
from hyperseg.modeling import HyperSegForUniversalSegmentation

TINY_CLASS_NAMES = ["person", "dog", "grass", "sky"]


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
