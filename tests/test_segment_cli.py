"""The README's main command: the shipped sample, the shipped default model, an overlay PNG."""

import numpy as np
from hub_helpers import single_torch_thread  # noqa: F401 (fixture)
from PIL import Image

from hyperseg.processing import segment as segment_cli
from hyperseg.training.synthetic import synthetic_example


def test_main_command_segments_the_sample_with_the_default_model(tmp_path, capsys):
    output = tmp_path / "overlay.png"
    segment_cli.main(["--output", str(output)])
    printed = capsys.readouterr().out
    assert "NOTE" not in printed, "the default model must have trained weights"
    assert f"overlay written to {output}" in printed

    # the sample is held-out synthetic scene 5 of seed 1, so its ground truth can be drawn again
    row = synthetic_example("referring", seed=1, index=5, height=256, width=256)
    sample = Image.open(segment_cli.SAMPLE_IMAGE).convert("RGB")
    assert np.array_equal(np.asarray(sample), np.asarray(row["image"]))
    assert row["text"] == segment_cli.DEFAULT_PROMPT

    summary = segment_cli.segment(
        segment_cli.SAMPLE_IMAGE, segment_cli.DEFAULT_PROMPT, segment_cli.DEFAULT_MODEL, tmp_path / "again.png"
    )
    target = np.isin(np.asarray(row["segmentation"]), row["target_ids"])
    mask = summary["mask"]
    assert (mask & target).sum() / (mask | target).sum() >= 0.9
    # the overlay is the sample where the mask is off, and recoloured where it is on
    overlay = np.asarray(Image.open(output).convert("RGB"))
    assert overlay.shape == target.shape + (3,)
    changed = (overlay != np.asarray(sample)).any(-1)
    assert np.array_equal(changed & ~mask, np.zeros_like(mask)) and changed[mask].mean() > 0.99
