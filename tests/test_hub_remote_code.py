"""
Saved HyperSeg folders are self-contained remote code: in a Python where the `hyperseg` package is NOT importable,
AutoModelForUniversalSegmentation / AutoModel / AutoModelForImageSegmentation, AutoProcessor, AutoImageProcessor and
`pipeline("image-segmentation")` load them with `trust_remote_code=True`, from the folder and by repo id from an
offline Hub cache, and compute bit-identical outputs to the package. Also: the export command and the model cards,
whose snippets run there against a tiny model.
"""

import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, require_fixture
from hub_helpers import (  # noqa: F401
    check_remote_results,
    check_without_package,
    native_records,
    place_in_hub_cache,
    random_image,
    run_client,
    single_torch_thread,
    tiny_model_and_processor,
)
from huggingface_hub import ModelCard
from transformers import AutoConfig

from hyperseg.conversion.convert_hyperseg_to_hf import convert
from hyperseg.conversion.export_hub_folder import check_hub_folder, export, render_model_card

MODEL_CARDS = sorted(path for path in (REPO_ROOT / "model_cards").glob("*.md") if path.name != "README.md")
CARD_IMAGE_URL = "http://images.cocodataset.org/val2017/000000039769.jpg"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny random model saved with `save_pretrained`, and the golden-data checkpoint converted."""
    root = tmp_path_factory.mktemp("saved")
    model, processor = tiny_model_and_processor()
    model.save_pretrained(root / "tiny_random")
    processor.save_pretrained(root / "tiny_random")
    convert(require_fixture("original_tiny", "checkpoint"), root / "converted_original_tiny")
    return {"tiny_random": root / "tiny_random", "converted_original_tiny": root / "converted_original_tiny"}


@pytest.mark.parametrize("name", ["tiny_random", "converted_original_tiny"])
def test_saved_folder_is_self_contained(folders, name):
    folder = folders[name]
    assert check_hub_folder(folder) == []
    assert (folder / "pipeline_hyperseg.py").exists() and (folder / "processing_hyperseg.py").exists()


@pytest.mark.parametrize("card", MODEL_CARDS, ids=[path.stem for path in MODEL_CARDS])
def test_model_card_metadata(card):
    metadata = ModelCard.load(card).data
    assert metadata.library_name == "transformers"
    assert metadata.pipeline_tag == "image-segmentation"
    assert metadata.license and metadata.tags
    # a card names the model whose weights it starts from, unless it was trained from random initialisation
    assert bool(metadata.base_model) != ("trained-from-scratch" in metadata.tags), (metadata.base_model, metadata.tags)
    text = card.read_text()
    assert "{{repo_id}}" in text and CARD_IMAGE_URL in text, "snippets must use {{repo_id}} and the example image"


def test_tiny_random_model_without_package(folders, tmp_path):
    """
    The tiny random model exported and loaded by repo id from an offline Hub cache, then re-saved by the remote code
    itself and loaded from that folder; the model cards' snippets run against the export.
    """
    folder, repo_id = folders["tiny_random"], "hyperseg-tests/tiny-random-hyperseg"
    hub_folder = tmp_path / "hub_folder"
    export(folder, hub_folder, MODEL_CARDS[0], repo_id)
    assert check_hub_folder(hub_folder) == []
    hf_home = tmp_path / "hf_home"
    place_in_hub_cache(hub_folder, hf_home, repo_id)
    card_image = tmp_path / "card_image.png"
    random_image(480, 640, seed=4).save(card_image)  # the size of the cards' COCO image, which their prompts fit
    snippets = []
    for card in MODEL_CARDS:
        snippets.append(tmp_path / f"{card.stem}_snippets.md")
        snippets[-1].write_text(render_model_card(card, repo_id).replace(CARD_IMAGE_URL, str(card_image)))
    resaved = tmp_path / "resaved_by_remote_code"

    results = run_client(tmp_path, hf_home, [repo_id], "--resave", str(resaved), "--snippets", *map(str, snippets))
    check_remote_results(results, native_records(folder, tmp_path / "image.png"), [repo_id, str(resaved)])
    assert check_hub_folder(resaved) == []


def test_converted_checkpoint_without_package(folders, tmp_path):
    """The golden-data checkpoint converted, from its folder and by repo id from an offline Hub cache."""
    check_without_package(tmp_path, folders["converted_original_tiny"], "hyperseg-tests/converted-original-tiny")


def test_export_writes_the_card_and_refuses_a_used_folder(folders, tmp_path):
    hub_folder = tmp_path / "hub_folder"
    export(folders["tiny_random"], hub_folder, MODEL_CARDS[0], "my-org/my-hyperseg", class_names=["cat", "sofa"])
    readme = (hub_folder / "README.md").read_text()
    assert "{{repo_id}}" not in readme and '"my-org/my-hyperseg"' in readme
    assert ModelCard.load(hub_folder / "README.md").data.library_name == "transformers"
    exported = AutoConfig.from_pretrained(hub_folder)
    assert exported.id2label == {0: "cat", 1: "sofa"}
    with pytest.raises(FileExistsError, match="not empty"):
        export(folders["tiny_random"], hub_folder, MODEL_CARDS[0], "my-org/my-hyperseg")


def test_check_hub_folder_names_what_is_missing(folders, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(folders["tiny_random"], broken)
    (broken / "mask_decoder.py").unlink()
    (broken / "pipeline_hyperseg.py").unlink()
    problems = check_hub_folder(broken)
    assert "modeling_hyperseg.py imports .mask_decoder, which is not in the folder" in problems
    assert any("pipeline_hyperseg.HyperSegSegmentationPipeline is referenced" in problem for problem in problems)
