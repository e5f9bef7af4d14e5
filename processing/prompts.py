"""The conversation templates HyperSeg was trained with, one per task, as sequences of prompt pieces.

A prompt is a list of pieces: template text (its special tokens, e.g. `<|endoftext|>`, are recognised), user text
(tokenised with special tokens split, so a user can never inject a placeholder), placeholders expanded by the
processor, and pooled prompts (a referring instruction or a class name, each followed by `[SEG]`).
"""

from dataclasses import dataclass

SYSTEM_MESSAGE = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions."
)

PROMPT_STYLES = ("hyperseg", "instructseg")
SEGMENTATION_TASKS = ("referring", "reasoning", "panoptic", "instance", "semantic", "interactive")
VIDEO_TASKS = ("referring_video", "reasoning_video")
TASKS = SEGMENTATION_TASKS + VIDEO_TASKS + ("chat",)


@dataclass(frozen=True)
class Template:
    """Template text; special tokens inside it are recognised."""

    text: str


@dataclass(frozen=True)
class UserText:
    """Text written by the user; tokenised with special tokens split."""

    text: str


@dataclass(frozen=True)
class Placeholder:
    """`image`, `temporal`, `queries` or `region`; expanded by the processor to its token count."""

    name: str


@dataclass(frozen=True)
class SegToken:
    """The `[SEG]` token."""


@dataclass(frozen=True)
class PooledPrompt:
    """A referring instruction (`kind="referring"`) or a class name (`kind="class"`) followed by `[SEG]`."""

    kind: str
    text: str


def _conversation(human: list, assistant: list | None) -> list:
    """Mipha's `phi` v0 template: `{system} USER: {human} ASSISTANT: {assistant}<|endoftext|>`."""
    pieces = [Template(f"{SYSTEM_MESSAGE} USER: "), *human]
    if assistant is None:
        return pieces + [Template(" ASSISTANT:")]
    return pieces + [Template(" ASSISTANT: "), *assistant, Template("<|endoftext|>")]


def _image_and_latents(intro: str, style: str) -> list:
    """HyperSeg puts the perceiver tokens after the image tokens, InstructSeg before them."""
    first, second = ("image", "temporal") if style == "hyperseg" else ("temporal", "image")
    return [Template(intro), Placeholder(first), Template("\n"), Placeholder(second), Template("\n")]


def _instruction(task: str, text: str) -> str:
    """RefCOCO / Ref-YouTube-VOS expressions get a full stop; ReasonSeg questions are only stripped; ReVOS drops '(s)'."""
    if task in ("referring", "referring_video"):
        return f" {text}.".strip()
    if task == "reasoning_video":
        return text.strip().replace("(s)", "")
    return text.strip()


def build_prompt(
    task: str,
    text: str | None = None,
    class_names: list[str] | None = None,
    num_regions: int = 0,
    style: str = "hyperseg",
) -> list:
    """The prompt pieces of one sample (see the module docstring), in HyperSeg's or InstructSeg's wording."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {', '.join(PROMPT_STYLES)}")
    answer = [Template("\nSure, the segmentation result is "), SegToken(), Placeholder("queries")]
    kind = "Referring" if task in ("referring", "referring_video") else "Reasoning"
    if task in ("referring", "reasoning"):
        please = "Please" if style == "hyperseg" else "please"
        human = _image_and_latents("This is an image ", style) + [
            Template(f", {please} doing {kind} Segmentation according to the following instruction:\n"),
            PooledPrompt("referring", _instruction(task, text)),
        ]
        return _conversation(human, answer)
    if task in VIDEO_TASKS:
        if style == "hyperseg":
            intro, separator = "This is a frame ", ", "
        else:
            intro, separator = "There are reference frames and key frame ", ". "
        human = _image_and_latents(intro, style) + [
            Template(f"{separator}Please doing {kind} Segmentation according to the following instruction.\n"),
            Template("This is all the instruction: "),
            PooledPrompt("referring", _instruction(task, text)),
            Template("\n"),
        ]
        return _conversation(human, answer)
    if task in ("panoptic", "instance", "semantic"):
        human = _image_and_latents("This is an image ", style) + [
            Template(f", Please do {task.capitalize()} Segmentation.\nThis is all the candidate categories: ")
        ]
        for index, name in enumerate(class_names):
            human += [PooledPrompt("class", name), Template(", " if index < len(class_names) - 1 else ".\n")]
        return _conversation(human, [Template("\nSure, the segmentation result is "), Placeholder("queries")])
    if task == "interactive":
        human = _image_and_latents("This is an image ", style) + [Template(", Please segment by given regions\nThis is all regions: ")]
        for index in range(num_regions):
            human += [Template(" "), Placeholder("region"), Template("," if index < num_regions - 1 else ".\n")]
        return _conversation(human, [Template("\n[SEG]"), Placeholder("queries")])
    if task == "chat":
        return _conversation([Placeholder("image"), Template("\n"), UserText(text)], None)
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
