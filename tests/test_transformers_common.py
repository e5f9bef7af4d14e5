"""
transformers' own common tests, `ModelTesterMixin` and `ProcessorTesterMixin`, run against a tiny HyperSeg.

They come from the transformers source distribution of the installed version, which the first run downloads from
PyPI (`pip download --no-binary :all:`) into a cache outside the repository (`$HYPERSEG_TEST_CACHE`, default
`~/.cache/hyperseg-tests`); nothing of it is committed. The sdist ships `tests/*.py` but not the sub-packages and
helpers those modules import; this file writes empty stand-ins for them into the cache:
`exporters.test_export.ExportTesterMixin` and `generation.test_utils.GenerationTesterMixin` (so their tests do not
run at all and are not counted below), and `utils/fetch_hub_objects_for_ci.url_to_local_path` (mapping the Hub
image fixtures to a local image).

Every skipped test says why in `MODEL_SKIPS` / `PROCESSOR_SKIPS`.
"""

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import pytest
import torch
import transformers
from conftest import require_fixture
from hub_helpers import random_image, single_torch_thread  # noqa: F401
from tiny_config import tiny_hyperseg_config

from hyperseg.conversion.convert_hyperseg_to_hf import convert_tokenizer
from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegImageProcessor, HyperSegProcessor

CACHE = Path(os.environ.get("HYPERSEG_TEST_CACHE", Path.home() / ".cache" / "hyperseg-tests"))
COMMON_TESTS = CACHE / f"transformers-{transformers.__version__}"
PACKAGE = "transformers_common_tests"
STAND_INS = {
    f"{PACKAGE}/__init__.py": "",
    f"{PACKAGE}/exporters/__init__.py": "",
    f"{PACKAGE}/exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    f"{PACKAGE}/generation/__init__.py": "",
    f"{PACKAGE}/generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/fetch_hub_objects_for_ci.py": (
        "from pathlib import Path\n\n\n"
        "def url_to_local_path(url):\n"
        "    local = Path(__file__).with_name(url.rsplit('/', 1)[-1])\n"
        "    return str(local) if local.exists() else url\n"
    ),
}


def fetch_common_tests() -> Path:
    """The folder holding `transformers_common_tests` (the sdist's tests/*.py) and `utils/`; downloads it once."""
    if (COMMON_TESTS / PACKAGE / "test_modeling_common.py").exists():
        return COMMON_TESTS
    version = transformers.__version__
    with tempfile.TemporaryDirectory() as download_dir:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--no-build-isolation",
                f"transformers=={version}",
                "--dest",
                download_dir,
            ],
            check=True,
        )
        with tarfile.open(Path(download_dir) / f"transformers-{version}.tar.gz") as archive:
            prefix = f"transformers-{version}/tests/"
            for member in archive.getmembers():
                name = member.name.removeprefix(prefix)
                if member.name.startswith(prefix) and member.isfile() and "/" not in name and name.endswith(".py"):
                    target = COMMON_TESTS / PACKAGE / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
    for relative_path, text in STAND_INS.items():
        (COMMON_TESTS / relative_path).parent.mkdir(parents=True, exist_ok=True)
        (COMMON_TESTS / relative_path).write_text(text)
    random_image(480, 640).save(COMMON_TESTS / "utils" / "coco_sample.png")
    return COMMON_TESTS


try:
    sys.path.insert(0, str(fetch_common_tests()))
    modeling_common = importlib.import_module(f"{PACKAGE}.test_modeling_common")
except (subprocess.CalledProcessError, ImportError) as error:
    pytest.skip(f"transformers' common tests are unavailable ({error})", allow_module_level=True)


class HyperSegModelTester:
    """Tiny config and inputs (a referring prompt over two images) for `ModelTesterMixin`."""

    is_training = True

    def __init__(self, parent, batch_size: int = 2):
        self.parent = parent
        self.batch_size = batch_size
        self.config = tiny_hyperseg_config()
        text = self.config.text_config
        self.hidden_size, self.num_hidden_layers = text.hidden_size, text.num_hidden_layers
        self.num_attention_heads, self.vocab_size = text.num_attention_heads, text.vocab_size
        self.prompt = [5, 6, *[self.config.image_token_id] * self.config.num_image_tokens, 7]
        self.prompt += [*[self.config.temporal_token_id] * self.config.perceiver_num_latents, 8, 9, 10, 59]
        self.prompt += [*[self.config.query_token_id] * self.config.num_queries, 11]
        self.seq_length = len(self.prompt)

    def get_config(self):
        return tiny_hyperseg_config()

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        vision_size, backbone_size = config.vision_config.image_size, config.backbone_config.image_size
        input_ids = torch.tensor([self.prompt] * self.batch_size)
        referring_prompt_mask = torch.zeros_like(input_ids)
        referring_prompt_mask[:, -self.config.num_queries - 5 : -self.config.num_queries - 1] = 1  # "8 9 10 [SEG]"
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(self.batch_size, 3, vision_size, vision_size),
            "backbone_pixel_values": torch.randn(self.batch_size, 3, backbone_size, backbone_size),
            "referring_prompt_mask": referring_prompt_mask,
        }
        return config, inputs


# test name -> why it cannot pass for HyperSeg
MODEL_SKIPS = {
    "test_can_init_all_missing_weights": (
        "transformers treats a model defined outside `transformers.` as custom code and, when initialising missing "
        "weights, marks every module without parameters of its own as initialised without calling its init "
        "(`PreTrainedModel._initialize_weights`, for remote code that writes weights in place); the flag is handed "
        "down to sub-models, so SigLIP's SiglipAttention / SiglipMLP xavier init never runs under HyperSeg and their "
        "Linear layers keep SiglipPreTrainedModel's lecun-normal init (16 of 393 tensors differ from building the "
        "model, every other one is equal). Only a SigLIP tower initialised from nothing is affected; released weights "
        "always come from a checkpoint"
    ),
    "test_hidden_states_output": (
        "HyperSeg returns the LLM's last hidden state (`llm_last_hidden_state`), not one `hidden_states` tuple: its "
        "hidden states come from four networks (SigLIP, Phi, Swin, mask decoder) of different shapes"
    ),
    "test_retain_grad_hidden_states_attentions": "no `hidden_states` / `attentions` outputs (as above)",
    "test_model_base_model_prefix": (
        "HyperSeg is one composite model whose LLM, towers and decoders are siblings; there is no base model under a "
        "prefix (base_model_prefix = ''), so `model.base_model is model`"
    ),
    "test_generation_tester_mixin_inheritance": (
        "GenerationTesterMixin is not shipped in the transformers sdist (tests/generation/ is missing); generate() "
        "is covered by tests/test_parity_original.py::test_chat_f"
    ),
    "test_get_image_features_output_0": (
        "get_image_features returns the projected image tokens as a tensor (the LLaVA 4.x contract); 5.23 expects a "
        "BaseModelOutputWithPooling"
    ),
    "test_get_image_features_output_1": "see test_get_image_features_output_0",
    "test_get_image_features_output_2": "see test_get_image_features_output_0",
    "test_get_image_features_hidden_states": "see test_get_image_features_output_0",
    "test_training_gradient_checkpointing_use_reentrant_true": (
        "the mask decoder is transformers' Mask2FormerMaskedAttentionDecoder, whose layers take their inputs as "
        "keyword arguments, which reentrant checkpointing does not detach (backward crosses the graph twice); "
        "transformers' own Mask2FormerForUniversalSegmentation refuses activation checkpointing altogether. The "
        "default non-reentrant checkpointing passes (test_training_gradient_checkpointing*)"
    ),
}


class HyperSegModelTest(modeling_common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (HyperSegForUniversalSegmentation,)
    test_resize_embeddings = False  # the LLM's embeddings are resized by resizing the tokenizer's model, not here
    test_torch_exportable = False  # ExportTesterMixin is a stand-in (see the module docstring)
    test_mismatched_shapes = False  # no classification head whose size follows num_labels
    has_attentions = False  # attention maps of four sub-networks are not exposed
    # one forward exercises one prompt kind: a referring prompt leaves the class-name, region and LM heads (and the
    # perceiver's next-frame projection) without gradient
    test_all_params_have_gradient = False
    _is_composite = True

    def setUp(self):
        self.model_tester = HyperSegModelTester(self)
        reason = MODEL_SKIPS.get(self._testMethodName)
        if reason is not None:
            self.skipTest(reason)

    # targets for the training tests; the loss samples random points (Mask2Former's importance sampling), so two
    # calls with targets differ and test_model_outputs_equivalence compares outputs without them
    with_mask_labels = True

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels and self.with_mask_labels:
            size = self.model_tester.config.backbone_config.image_size
            generator = torch.Generator().manual_seed(0)
            inputs_dict["mask_labels"] = [
                (torch.rand(1, size, size, generator=generator) > 0.5).float()
                for _ in range(self.model_tester.batch_size)
            ]
        return inputs_dict

    def test_model_outputs_equivalence(self):
        self.with_mask_labels = False
        super().test_model_outputs_equivalence()


processing_common = importlib.import_module(f"{PACKAGE}.test_processing_common")

TOKENIZER_KWARGS_REASON = (
    "HyperSegProcessor builds its prompts from HyperSeg's templates, expands the placeholders and right-pads to the "
    "longest sample itself; it takes no tokenizer / image-processor kwargs (padding, max_length, ...) through "
    "`ProcessingKwargs`"
)
# test name -> why it cannot pass for HyperSeg
PROCESSOR_SKIPS = {
    "test_unstructured_kwargs_0_images": TOKENIZER_KWARGS_REASON,
    "test_unstructured_kwargs_batched_0_images": TOKENIZER_KWARGS_REASON,
    "test_doubly_passed_kwargs_0_images": TOKENIZER_KWARGS_REASON,
    "test_structured_kwargs_nested_from_dict_0_images": TOKENIZER_KWARGS_REASON,
    "test_kwargs_overrides_default_subprocessor_kwargs_0_images": TOKENIZER_KWARGS_REASON,
    "test_subprocessor_defaults_preserved_by_kwargs_0_images": TOKENIZER_KWARGS_REASON,
    "test_overlapping_text_image_kwargs_handling_0_images": TOKENIZER_KWARGS_REASON,
    "test_call_arguments_default_none": (
        "HyperSegProcessor.__call__ takes `task` (default 'referring') and `return_tensors` (default 'pt') as "
        "explicit arguments rather than through `ProcessingKwargs`"
    ),
    "test_call_arguments_not_in_processor_kwargs": "see test_call_arguments_default_none",
    "test_model_input_names": (
        "model_input_names lists the inputs of every task (class_prompt_index for class names, region_masks for "
        "visual prompts, reference_pixel_values for InstructSeg video); one call returns those of its own task"
    ),
    "test_processor_from_and_save_pretrained": (
        "saving a remote-code processor writes `auto_map` onto the saved object (transformers' custom_object_save) "
        "and from_pretrained drops it again (processing_utils.py:1562), so the two `to_dict()`s differ by `auto_map` "
        "alone: test_processor_round_trip_besides_auto_map checks the rest"
    ),
    "test_processor_from_and_save_pretrained_as_nested_dict": "see test_processor_from_and_save_pretrained",
}


class HyperSegProcessorTest(processing_common.ProcessorTesterMixin, unittest.TestCase):
    processor_class = HyperSegProcessor

    def setUp(self):
        reason = PROCESSOR_SKIPS.get(self._testMethodName)
        if reason is not None:
            self.skipTest(reason)

    @classmethod
    def _setup_tokenizer(cls):
        tokenizer, _ = convert_tokenizer(require_fixture("original_tiny", "checkpoint"))
        return tokenizer

    @classmethod
    def _setup_image_processor(cls):
        config = tiny_hyperseg_config()
        size = config.vision_config.image_size
        return HyperSegImageProcessor(
            size={"height": size, "width": size}, backbone_size=config.backbone_config.image_size
        )

    @staticmethod
    def prepare_processor_dict():
        config = tiny_hyperseg_config()
        return {
            "num_image_tokens": config.num_image_tokens,
            "num_temporal_tokens": config.perceiver_num_latents,
            "num_queries": config.num_queries,
        }

    def test_processor_round_trip_besides_auto_map(self):
        processor = self.get_processor()
        with tempfile.TemporaryDirectory() as folder:
            processor.save_pretrained(folder)
            reloaded = self.processor_class.from_pretrained(folder)
        saved = processor.to_dict()
        assert saved.pop("auto_map") == {"AutoProcessor": "processing_hyperseg.HyperSegProcessor"}
        assert reloaded.to_dict() == saved
        assert repr(reloaded.image_processor) == repr(processor.image_processor)
