"""Procedural training data: scenes of coloured shapes for every HyperSeg task, deterministic from a seed.

A scene has two stuff regions ("sky" above a slanted horizon, "ground" below) and 2-4 things (a red / green / blue /
yellow circle, square or triangle) that never overlap. From one scene the generator derives the row of any task in
the schema of [`hyperseg.training.data`]:

- referring: "the red circle", or with a spatial relation when needed to single the object out
  ("the red circle left of the blue square");
- reasoning: "Which red object has no corners?" (the shape is described, not named);
- panoptic / instance / semantic: every segment with its class among `SHAPES_CLASS_NAMES` (things, then stuff);
- instance_by_color: instance segmentation (rows of task "instance") over the twelve colour-and-shape classes of
  `COLORED_SHAPE_NAMES` ("red circle", ...), which a model can only tell apart by colour too;
- interactive: the segments themselves (the collator derives point / box / scribble / mask prompts from them);
- referring_video / reasoning_video: a short clip in which every shape moves at its own constant velocity,
  bouncing off the image borders ("the red circle moving left");
- chat: a question about the scene and its one-word answer ("What color is the square?" -> "blue").

Row `i` of `synthetic_dataset(n, seed)` depends only on `(seed, i)`.
"""

import tempfile
from dataclasses import dataclass, replace

import datasets
import numpy as np
from PIL import Image

from .data import TRAINING_FEATURES

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
STUFF = ("sky", "ground")
SHAPES_CLASS_NAMES = SHAPES + STUFF
COLORED_SHAPE_NAMES = tuple(f"{color} {shape}" for color in COLORS for shape in SHAPES)
SKY_COLOR, GROUND_COLOR = (175, 210, 240), (150, 125, 90)
RELATIONS = ("left of", "right of", "above", "below")
CORNERS = {"circle": "has no corners", "triangle": "has three corners", "square": "has four corners"}
# how often a scene repeats the colour and kind of one of its shapes (the look-alikes that need "on the left", ...)
DUPLICATE_PROBABILITY = 0.15
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
SYNTHETIC_TASKS = (
    "referring",
    "reasoning",
    "panoptic",
    "instance",
    "instance_by_color",
    "semantic",
    "interactive",
    "referring_video",
    "reasoning_video",
    "chat",
)


@dataclass(frozen=True)
class Shape:
    """One thing of a scene: `size` is the circumradius in pixels, (`x`, `y`) the centre, (`vx`, `vy`) pixels/frame."""

    shape: str
    color: str
    x: float
    y: float
    size: float
    vx: float = 0.0
    vy: float = 0.0

    @property
    def description(self) -> str:
        return f"{self.color} {self.shape}"

    def mask(self, height: int, width: int) -> np.ndarray:
        """(height, width) bool mask of the shape."""
        ys, xs = np.mgrid[0:height, 0:width] + 0.5
        dx, dy = xs - self.x, ys - self.y
        if self.shape == "circle":
            return dx**2 + dy**2 <= self.size**2
        if self.shape == "square":
            half = self.size / np.sqrt(2)
            return (np.abs(dx) <= half) & (np.abs(dy) <= half)
        # upward triangle inscribed in the circle of radius `size`: apex at the top, base at y + size / 2
        slope = np.sqrt(3)
        return (dy <= self.size / 2) & (slope * dx - dy <= self.size) & (-slope * dx - dy <= self.size)

    def moved(self, frame: int, height: int, width: int) -> "Shape":
        """The shape at `frame`, bouncing off the borders (the centre stays `size` away from them)."""
        return replace(
            self,
            x=_bounce(self.x + frame * self.vx, self.size, width - self.size),
            y=_bounce(self.y + frame * self.vy, self.size, height - self.size),
        )

    def relation_to(self, other: "Shape", strict: bool = True) -> list[str]:
        """
        The relations of `RELATIONS` from this shape to `other`: with `strict`, those that hold clearly (centres
        apart by more than both radii along the axis); otherwise those that hold at all (centre on that side).
        """
        gap = self.size + other.size if strict else 0.0
        holds = {
            "left of": other.x - self.x > gap,
            "right of": self.x - other.x > gap,
            "above": other.y - self.y > gap,
            "below": self.y - other.y > gap,
        }
        return [relation for relation in RELATIONS if holds[relation]]


def _bounce(value: float, low: float, high: float) -> float:
    period = 2 * (high - low)
    offset = (value - low) % period
    return low + (offset if offset <= high - low else period - offset)


@dataclass(frozen=True)
class Scene:
    """Stuff layout and things of one scene; `render` draws any frame of it."""

    height: int
    width: int
    horizon: float  # y of the horizon at x = 0
    horizon_slope: float
    shapes: tuple[Shape, ...]
    noise_seed: int

    def shapes_at(self, frame: int) -> list[Shape]:
        return [shape.moved(frame, self.height, self.width) for shape in self.shapes]

    def render(self, frame: int = 0) -> tuple[Image.Image, Image.Image]:
        """The RGB image and the segment-id map (mode "L": shape `k` has id `k + 1`, then sky, then ground)."""
        ys, xs = np.mgrid[0 : self.height, 0 : self.width]
        is_sky = ys + 0.5 < self.horizon + self.horizon_slope * (xs + 0.5)
        segmentation = np.where(is_sky, len(self.shapes) + 1, len(self.shapes) + 2).astype(np.uint8)
        image = np.where(is_sky[..., None], SKY_COLOR, GROUND_COLOR).astype(np.float32)
        for index, shape in enumerate(self.shapes_at(frame)):
            mask = shape.mask(self.height, self.width)
            image[mask] = COLORS[shape.color]
            segmentation[mask] = index + 1
        image += 8 * np.random.default_rng([self.noise_seed, frame]).standard_normal(image.shape, dtype=np.float32)
        image = np.clip(image, 0, 255).astype(np.uint8)
        return Image.fromarray(image), Image.fromarray(segmentation)

    def segments(self) -> list[dict]:
        """`segments` column: one thing per shape, then the two stuff segments."""
        things = [
            {"id": index + 1, "category_id": SHAPES.index(shape.shape), "isthing": True}
            for index, shape in enumerate(self.shapes)
        ]
        stuff = [
            {"id": len(self.shapes) + 1 + index, "category_id": len(SHAPES) + index, "isthing": False}
            for index in range(len(STUFF))
        ]
        return things + stuff


def random_scene(
    rng: np.random.Generator,
    height: int = 128,
    width: int = 128,
    num_shapes: tuple[int, int] = (2, 4),
    size_range: tuple[float, float] = (0.085, 0.17),
    max_speed: float = 0.0,
    duplicate_probability: float = DUPLICATE_PROBABILITY,
) -> Scene:
    """
    Draws a scene; shape sizes (circumradii) are drawn from `size_range` times the shorter image side. At frame 0
    the circumscribed circles of the shapes are at least 2 pixels apart; moving shapes
    (`max_speed > 0`, pixels per frame) may overlap later, the later shape drawn on top. With probability
    `duplicate_probability` the last shape repeats the colour and kind of another one, so that referring expressions
    need a spatial relation.
    """
    count = int(rng.integers(num_shapes[0], num_shapes[1] + 1))
    shapes = []
    while len(shapes) < count:
        size = float(rng.uniform(*size_range)) * min(height, width)
        x, y = (float(rng.uniform(size, limit - size)) for limit in (width, height))
        if any((x - s.x) ** 2 + (y - s.y) ** 2 < (size + s.size + 2) ** 2 for s in shapes):
            continue
        if shapes and len(shapes) == count - 1 and rng.random() < duplicate_probability:
            template = shapes[int(rng.integers(len(shapes)))]
            kind, color = template.shape, template.color
        else:
            kind, color = SHAPES[int(rng.integers(len(SHAPES)))], list(COLORS)[int(rng.integers(len(COLORS)))]
        velocity = rng.uniform(-max_speed, max_speed, size=2) if max_speed else (0.0, 0.0)
        shapes.append(Shape(kind, color, x, y, size, float(velocity[0]), float(velocity[1])))
    return Scene(
        height=height,
        width=width,
        horizon=float(rng.uniform(0.35, 0.65) * height),
        horizon_slope=float(rng.uniform(-0.3, 0.3)),
        shapes=tuple(shapes),
        noise_seed=int(rng.integers(2**31)),
    )


def referring_expression(shapes: list[Shape], target: int, rng: np.random.Generator) -> str | None:
    """
    An expression that singles out `shapes[target]`: "the {shape}" when no other shape has its kind, "the {color}
    {shape}" when no other has its kind and colour, else (or, at random, also then) "the {color} {shape} {relation}
    the {color} {shape}" with an anchor that is itself unique and a relation that holds clearly for the target while
    every look-alike lies on the other side of the anchor, or "the {color} {shape} on the left" (right, at the top /
    bottom) when the target is clearly the most extreme of its look-alikes that way. `None` when no such expression
    exists.
    """
    shape = shapes[target]
    look_alikes = [s for i, s in enumerate(shapes) if i != target and s.description == shape.description]
    unique = [s for s in shapes if sum(o.description == s.description for o in shapes) == 1]
    options = [
        f"the {shape.description} {relation} the {anchor.description}"
        for anchor in unique
        if anchor is not shape
        for relation in shape.relation_to(anchor)
        if not any(relation in other.relation_to(anchor, strict=False) for other in look_alikes)
    ]
    for phrase, coordinate in (
        ("on the left", "x"),
        ("on the right", "-x"),
        ("at the top", "y"),
        ("at the bottom", "-y"),
    ):
        sign, axis = (-1, coordinate[1]) if coordinate.startswith("-") else (1, coordinate)
        if look_alikes and all(
            sign * (getattr(other, axis) - getattr(shape, axis)) > shape.size + other.size for other in look_alikes
        ):
            options.append(f"the {shape.description} {phrase}")
    if sum(other.shape == shape.shape for other in shapes) == 1 and rng.random() < 0.35:
        return f"the {shape.shape}"  # the only one of its kind: named by its shape alone
    if not look_alikes and (not options or rng.random() < 0.9):
        return f"the {shape.description}"
    return options[int(rng.integers(len(options)))] if options else None


EXPRESSION_KINDS = ("shape", "colour and shape", "relation", "position")


def expression_kind(text: str) -> str:
    """
    Which of `EXPRESSION_KINDS` a referring expression of `referring_expression` is: "the circle" (shape), "the red
    circle" (colour and shape), "the red circle left of the blue square" (relation), "the red circle on the left"
    (position, among look-alikes).
    """
    words = text.split()
    if len(words) == 2 and words[0] == "the" and words[1] in SHAPES:
        return "shape"
    if len(words) >= 3 and words[0] == "the" and words[1] in COLORS and words[2] in SHAPES:
        rest = " ".join(words[3:])
        if not rest:
            return "colour and shape"
        if rest in ("on the left", "on the right", "at the top", "at the bottom"):
            return "position"
        if any(rest.startswith(f"{relation} the ") for relation in RELATIONS):
            return "relation"
    raise ValueError(f"{text!r} is not a referring expression of the synthetic shapes grammar")


def _check_duplicate_probability(duplicate_probability: float) -> None:
    if not 0.0 <= duplicate_probability <= 1.0:
        raise ValueError(f"duplicate_probability must lie in [0, 1], got {duplicate_probability}")


def _unique_targets(shapes: list[Shape]) -> list[int]:
    return [i for i, s in enumerate(shapes) if sum(o.description == s.description for o in shapes) == 1]


def _motion(shape: Shape) -> str:
    if abs(shape.vx) >= abs(shape.vy):
        return "moving right" if shape.vx > 0 else "moving left"
    return "moving down" if shape.vy > 0 else "moving up"


def _chat(shapes: list[Shape], rng: np.random.Generator) -> tuple[str, str]:
    kinds = [s.shape for s in shapes]
    unique_kinds = [kind for kind in SHAPES if kinds.count(kind) == 1]
    questions = [("How many shapes are there?", NUMBER_WORDS[len(shapes)])]
    for kind in unique_kinds:
        questions.append((f"What color is the {kind}?", shapes[kinds.index(kind)].color))
    for color in COLORS:
        matching = [s for s in shapes if s.color == color]
        if len(matching) == 1:
            questions.append((f"What shape is the {color} object?", matching[0].shape))
    return questions[int(rng.integers(len(questions)))]


def synthetic_example(
    task: str,
    seed: int,
    index: int,
    height: int = 128,
    width: int = 128,
    num_frames: int = 3,
    duplicate_probability: float = DUPLICATE_PROBABILITY,
) -> dict:
    """
    Row `index` of the synthetic dataset of `seed` for `task` (see the module docstring); `duplicate_probability`
    is that of a scene with two look-alike shapes (see `random_scene`).
    """
    if task not in SYNTHETIC_TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {', '.join(SYNTHETIC_TASKS)}")
    _check_duplicate_probability(duplicate_probability)
    rng = np.random.default_rng([seed, index])
    video = task.endswith("_video")
    row = {
        "task": task,
        "image": None,
        "segmentation": None,
        "frames": [],
        "segmentations": [],
        "segments": [],
        "class_names": [],
        "text": None,
        "target_ids": [],
        "answer": None,
    }
    while True:
        scene = random_scene(
            rng, height, width, max_speed=6.0 if video else 0.0, duplicate_probability=duplicate_probability
        )
        shapes = list(scene.shapes)
        if task in ("referring", "referring_video"):
            candidates = range(len(shapes)) if task == "referring" else _unique_targets(shapes)
            expressions = {i: referring_expression(shapes, i, rng) for i in candidates}
            expressions = {i: text for i, text in expressions.items() if text is not None}
        elif task in ("reasoning", "reasoning_video"):
            expressions = {
                i: f"Which {shapes[i].color} object {CORNERS[shapes[i].shape]}?" for i in _unique_targets(shapes)
            }
        else:
            break
        if expressions:
            target = list(expressions)[int(rng.integers(len(expressions)))]
            text = expressions[target]
            if video and rng.random() < 0.5 and task == "referring_video":
                text = f"{text} {_motion(shapes[target])}"
            row.update(text=text, target_ids=[target + 1])
            break

    if task == "instance_by_color":  # the things alone: instance rows ignore stuff
        row["task"], row["class_names"] = "instance", list(COLORED_SHAPE_NAMES)
        row["segments"] = [
            {"id": index + 1, "category_id": COLORED_SHAPE_NAMES.index(shape.description), "isthing": True}
            for index, shape in enumerate(shapes)
        ]
    else:
        row["segments"] = scene.segments()
    if task in ("panoptic", "instance", "semantic"):
        row["class_names"] = list(SHAPES_CLASS_NAMES)
    if task == "chat":
        row["text"], row["answer"] = _chat(shapes, rng)
    if video:
        frames = [scene.render(frame) for frame in range(num_frames)]
        row["frames"], row["segmentations"] = [f[0] for f in frames], [f[1] for f in frames]
    else:
        row["image"], row["segmentation"] = scene.render()
    return row


def synthetic_dataset(
    num_samples: int,
    seed: int = 0,
    tasks: tuple[str, ...] | list[str] = ("referring", "panoptic"),
    height: int = 128,
    width: int = 128,
    num_frames: int = 3,
    duplicate_probability: float = DUPLICATE_PROBABILITY,
) -> datasets.Dataset:
    """
    `num_samples` synthetic rows in the training schema, row `i` of task `tasks[i % len(tasks)]` (repeat a task in
    `tasks` to weight it). Rows carry an `index` column (their position) that error messages refer to. A higher
    `duplicate_probability` (default 0.15) gives more scenes with look-alike shapes, hence more referring
    expressions that need a spatial relation ("the red circle on the left").

    Example:
        >>> train = synthetic_dataset(4000, seed=0, tasks=("referring", "panoptic"))
        >>> held_out = synthetic_dataset(100, seed=1, tasks=("referring",))
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    _check_duplicate_probability(duplicate_probability)
    tasks = list(tasks)
    for task in tasks:
        if task not in SYNTHETIC_TASKS:
            raise ValueError(f"unknown synthetic task {task!r}; expected one of {', '.join(SYNTHETIC_TASKS)}")

    def rows():
        for index in range(num_samples):
            task = tasks[index % len(tasks)]
            row = synthetic_example(task, seed, index, height, width, num_frames, duplicate_probability)
            yield {"index": index, **row}

    # a private cache: `datasets` keys its generator cache on a hash that does not cover every function the rows
    # come from, so a shared cache can serve rows of an older version of this module
    with tempfile.TemporaryDirectory(prefix="hyperseg-synthetic-") as cache_dir:
        return datasets.Dataset.from_generator(
            rows, features=TRAINING_FEATURES, keep_in_memory=True, cache_dir=cache_dir
        )


__all__ = [
    "COLORED_SHAPE_NAMES",
    "DUPLICATE_PROBABILITY",
    "EXPRESSION_KINDS",
    "SHAPES_CLASS_NAMES",
    "SYNTHETIC_TASKS",
    "Scene",
    "Shape",
    "expression_kind",
    "random_scene",
    "referring_expression",
    "synthetic_dataset",
    "synthetic_example",
]
