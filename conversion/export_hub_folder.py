"""Export a converted HyperSeg model as a complete, Hub-ready repository folder.

    python -m hyperseg.conversion.export_hub_folder --model_dir CONVERTED --output_dir HUB_FOLDER \
        --model_card model_cards/hyperseg-3b.md --repo_id ORG/NAME [--class_names names.json]

CONVERTED is a folder written by `convert_hyperseg_to_hf` (or by `save_pretrained`). HUB_FOLDER receives the weights,
`config.json` (with the `auto_map` of every Auto class and the `image-segmentation` custom pipeline), the generation
config, the processor and tokenizer files, the remote-code modules (flat), and the model card as `README.md`, with
`{{repo_id}}` replaced by ORG/NAME. `--class_names` (a JSON list) replaces the default vocabulary of prompt-free calls.
The folder is then checked to be self-contained: every module `config.json` and the processor files name, and every
module those import, is present. Upload it with `huggingface-cli upload ORG/NAME HUB_FOLDER`.
"""

import argparse
import json
import re
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_imports

from ..modeling import HyperSegForUniversalSegmentation
from ..processing import HyperSegProcessor

REPO_ID_PLACEHOLDER = "{{repo_id}}"
REQUIRED_FILES = ("config.json", "processor_config.json", "tokenizer.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
REQUIRED_AUTO_MAP = {
    "config.json": ("AutoConfig", "AutoModel", "AutoModelForUniversalSegmentation", "AutoModelForImageSegmentation"),
    "processor_config.json": ("AutoProcessor",),
    "processor_config.json (image_processor)": ("AutoImageProcessor",),
}


def _class_references(value) -> list[str]:
    """Every `"module.Class"` string inside an `auto_map` / `custom_pipelines` entry (strings, lists, dicts)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [reference for item in value.values() for reference in _class_references(item)]
    if isinstance(value, (list, tuple)):
        return [reference for item in value if item is not None for reference in _class_references(item)]
    return []


def check_hub_folder(folder: Path) -> list[str]:
    """
    The problems that would stop `trust_remote_code` loading from `folder`: a missing file or `auto_map` entry, an
    entry naming a module that is not there, or a module importing a sibling that is not there.

    Args:
        folder (`Path`): a saved HyperSeg folder.

    Returns:
        `list[str]`: one sentence per problem; empty when the folder is self-contained.
    """
    folder = Path(folder)
    problems = [f"{name} is missing" for name in REQUIRED_FILES if not (folder / name).exists()]
    if not any((folder / name).exists() for name in WEIGHT_FILES):
        problems.append(f"no weights ({' or '.join(WEIGHT_FILES)})")
    if problems:
        return problems
    config = json.loads((folder / "config.json").read_text())
    processor = json.loads((folder / "processor_config.json").read_text())
    auto_maps = {
        "config.json": config.get("auto_map", {}),
        "processor_config.json": processor.get("auto_map", {}),
        "processor_config.json (image_processor)": processor.get("image_processor", {}).get("auto_map", {}),
    }
    for file_name, auto_map in auto_maps.items():
        problems += [
            f"{file_name} has no auto_map entry for {key}"
            for key in REQUIRED_AUTO_MAP[file_name]
            if key not in auto_map
        ]
    pipelines = config.get("custom_pipelines", {})
    if "image-segmentation" not in pipelines:
        problems.append("config.json registers no image-segmentation custom pipeline")
    references = [reference for auto_map in auto_maps.values() for reference in _class_references(auto_map)]
    references += [entry["impl"] for entry in pipelines.values()]
    for reference in references:
        module = reference.split("--")[-1].rsplit(".", 1)[0]
        if not (folder / f"{module}.py").exists():
            problems.append(f"{reference} is referenced but {module}.py is not in the folder")
    for module_file in sorted(folder.glob("*.py")):
        problems += [
            f"{module_file.name} imports .{imported}, which is not in the folder"
            for imported in get_relative_imports(module_file)
            if not (folder / f"{imported}.py").exists()
        ]
    return sorted(set(problems))


def render_model_card(template_file: Path, repo_id: str) -> str:
    """The model card with its `{{repo_id}}` placeholders filled in; refuses a card without YAML metadata."""
    text = Path(template_file).read_text()
    if not re.match(r"---\n.*?\n---\n", text, flags=re.DOTALL):
        raise ValueError(f"{template_file} does not start with a `---` YAML metadata block")
    return text.replace(REPO_ID_PLACEHOLDER, repo_id)


def export(
    model_dir: Path, output_dir: Path, model_card: Path, repo_id: str, class_names: list[str] | None = None
) -> None:
    """Writes the Hub folder (see the module docstring); raises if it is not self-contained."""
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty: export into a new folder")
    card = render_model_card(model_card, repo_id)
    model = HyperSegForUniversalSegmentation.from_pretrained(model_dir)
    processor = HyperSegProcessor.from_pretrained(model_dir)
    if class_names is not None:
        processor.set_default_vocabulary(model.config, class_names)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "README.md").write_text(card)
    problems = check_hub_folder(output_dir)
    if problems:
        raise RuntimeError(f"the exported folder {output_dir} is not self-contained:\n- " + "\n- ".join(problems))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, type=Path, help="converted HyperSeg folder")
    parser.add_argument("--output_dir", required=True, type=Path, help="new folder to write the Hub repository to")
    parser.add_argument("--model_card", required=True, type=Path, help="model card template (model_cards/*.md)")
    parser.add_argument("--repo_id", required=True, help="the Hub repository id the card's snippets load")
    parser.add_argument("--class_names", type=Path, help="JSON list: a new default vocabulary for prompt-free calls")
    args = parser.parse_args(argv)
    class_names = json.loads(args.class_names.read_text()) if args.class_names else None
    export(args.model_dir, args.output_dir, args.model_card, args.repo_id, class_names)
    print(f"exported {args.model_dir} -> {args.output_dir} (upload it as {args.repo_id})")


if __name__ == "__main__":
    main()
