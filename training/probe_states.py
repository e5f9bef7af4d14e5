"""Linear probes of what the `[SEG]` head of a model can read: does the state of an object's query know its position
and colour?

    python -m hyperseg.training.probe_states --model PATH [--num_scenes 320] [--seed 123]

For every shape of fresh synthetic scenes, `collect_object_states` takes the final mask-decoder state (the input of
the `[SEG]` head, whose dot product with the prompt embedding ranks the queries) of the query whose mask overlaps the
shape best. `linear_probes` then fits ridge regressions on the first 70% of the objects and scores them on the rest:
the centre's x and y (R²; 0 or less means no linearly readable position) and, for each pair of colours, a linear
classifier between the objects of those two colours (accuracy; 0.5 is chance). A referring expression that needs a
property the states do not carry ("the red circle" next to a blue one, "the red circle on the left" of two) can only
be resolved by chance, whatever the prompt embedding.
"""

import argparse
import itertools
import json

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..modeling import HyperSegForUniversalSegmentation
from ..processing import HyperSegProcessor
from .synthetic import COLORS, random_scene

PROBE_PROMPT = "the red circle"  # any referring prompt: it only makes the model run its `[SEG]` head


@torch.no_grad()
def collect_object_states(model, processor, num_scenes: int = 320, seed: int = 123, batch_size: int = 8) -> dict:
    """
    Per shape of `num_scenes` scenes of `random_scene(np.random.default_rng(seed))`: `states` (objects, hidden) the
    final decoder state of its best-overlapping query, `x` and `y` its centre in pixels, `color` its colour name.
    """
    if model.mask_decoder.seg_head is None:
        raise ValueError("the model has no [SEG] head (config.prompt_heads lacks 'seg')")
    captured = {}
    hook = model.mask_decoder.seg_head.register_forward_pre_hook(
        lambda module, args: captured.__setitem__("states", args[0])
    )
    rng = np.random.default_rng(seed)
    states, xs, ys, colors = [], [], [], []
    try:
        for start in tqdm(range(0, num_scenes, batch_size), desc="object states"):
            scenes = [random_scene(rng) for _ in range(min(batch_size, num_scenes - start))]
            images = [scene.render()[0] for scene in scenes]
            inputs = processor(images=images, text=[PROBE_PROMPT] * len(images), task="referring", return_tensors="pt")
            outputs = model(**inputs.to(model.device))
            masks = outputs.masks_queries_logits > 0  # (batch, queries, height/4, width/4)
            for index, scene in enumerate(scenes):
                for shape in scene.shapes:
                    target = torch.from_numpy(shape.mask(scene.height, scene.width)).float()[None, None]
                    target = F.interpolate(target, size=masks.shape[-2:], mode="area")[0, 0] > 0.5
                    target = target.to(masks.device)
                    overlap = (masks[index] & target).flatten(1).sum(1)  # (queries,)
                    union = (masks[index] | target).flatten(1).sum(1).clamp(min=1)
                    states.append(captured["states"][index, int((overlap / union).argmax())].float().cpu().numpy())
                    xs.append(shape.x)
                    ys.append(shape.y)
                    colors.append(shape.color)
    finally:
        hook.remove()
    return {"states": np.stack(states), "x": np.array(xs), "y": np.array(ys), "color": np.array(colors)}


def _ridge_fit_predict(features: np.ndarray, targets: np.ndarray, train: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge regression (with intercept) fitted on the rows `train`, predicting the other rows."""
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    gram = design[train].T @ design[train] + ridge * np.eye(design.shape[1])
    weights = np.linalg.solve(gram, design[train].T @ targets[train])
    return design[~train] @ weights


def linear_probes(collected: dict, train_fraction: float = 0.7, ridge: float = 1e-2) -> dict:
    """
    Held-out R² of x and y and, per pair of colours present, held-out accuracy of a linear classifier, from the
    output of `collect_object_states` (the first `train_fraction` of the objects train, the rest test).
    """
    states = collected["states"]
    train = np.arange(len(states)) < int(train_fraction * len(states))
    if train.all() or not train.any():
        raise ValueError(f"{len(states)} objects cannot be split into training and held-out probes")
    results = {}
    for axis in ("x", "y"):
        truth = collected[axis][~train]
        predicted = _ridge_fit_predict(states, collected[axis], train, ridge)
        results[f"R2_{axis}"] = float(1 - ((predicted - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())
    for first, second in itertools.combinations(COLORS, 2):
        pair = np.isin(collected["color"], (first, second))
        pair_train = np.arange(pair.sum()) < int(train_fraction * pair.sum())
        if pair_train.all() or not pair_train.any():
            continue
        signs = np.where(collected["color"][pair] == first, 1.0, -1.0)
        predicted = _ridge_fit_predict(states[pair], signs, pair_train, ridge)
        results[f"accuracy_{first}_vs_{second}"] = float(np.mean((predicted > 0) == (signs[~pair_train] > 0)))
    results["objects"] = len(states)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder or hub id")
    parser.add_argument("--num_scenes", type=int, default=320, help="fresh synthetic scenes (2-4 shapes each)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the scenes")
    args = parser.parse_args(argv)
    processor = HyperSegProcessor.from_pretrained(args.model)
    model = HyperSegForUniversalSegmentation.from_pretrained(args.model).eval()
    print(json.dumps(linear_probes(collect_object_states(model, processor, args.num_scenes, args.seed)), indent=2))


if __name__ == "__main__":
    main()
