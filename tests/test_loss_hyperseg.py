"""Tests of the training criterion (`hyperseg.modeling.loss_hyperseg`).

Parity: `instructseg_tiny` cases f (reason_seg batch of 2) and g (ReVOS clip of 3 key frames) were recorded from the
ORIGINAL InstructSeg criterion: predictions of every decoder layer, padded targets, Hungarian matches, the sampled
points and every loss term (see the fixture's README, "criterion"). The PSALM-only terms (class names, regions) have
no recording; they are checked against direct computations written out below.
"""

import json
import math

import pytest
import torch
from conftest import require_fixture
from safetensors.torch import load_file
from transformers.loss.loss_utils import ForCausalLMLoss

from hyperseg.modeling.loss_hyperseg import HyperSegHungarianMatcher, HyperSegLoss, HyperSegPointSampler

CASE_F = "f_train_reasonseg_batch2"
CASE_G = "g_train_revos"


def assert_close_to_reference(value, reference, name):
    value, reference = (x.item() if isinstance(x, torch.Tensor) else float(x) for x in (value, reference))
    assert abs(value - reference) <= 1e-5 * max(1.0, abs(reference)), f"{name}: {value!r} != reference {reference!r}"


def load_case(case):
    folder = require_fixture("instructseg_tiny", case)
    return load_file(folder / "tensors.safetensors"), json.loads((folder / "meta.json").read_text())


def criterion_from_meta(meta, point_sampler=None):
    """The criterion configured as the recording (weights as released, 256 points instead of 12544)."""
    config = meta["real_config"]
    return HyperSegLoss(
        class_weight=config["CLASS_WEIGHT"],
        mask_weight=config["MASK_WEIGHT"],
        dice_weight=config["DICE_WEIGHT"],
        num_points=meta["fixture_overrides"]["TRAIN_NUM_POINTS"],
        oversample_ratio=config["OVERSAMPLE_RATIO"],
        importance_sample_ratio=config["IMPORTANCE_SAMPLE_RATIO"],
        point_sampler=point_sampler,
    )


def frame_inputs(tensors, meta, frame):
    """Per-layer predictions (bf16, as recorded; final layer last), padded targets and the tensor-name prefix."""
    prefix = "" if frame is None else f"f{frame}."
    pred_masks = tensors["input.pred_masks"] if frame is None else tensors["input.pred_masks"][frame]
    pred_seg = tensors["input.pred_SEG_logits"] if frame is None else tensors["input.pred_SEG_logits"][frame]
    predictions = [
        {"masks_queries_logits": pred_masks[layer], "seg_queries_logits": pred_seg[layer][..., 0]}
        for layer in range(pred_masks.shape[0])
    ]
    mask_labels = [tensors[f"{prefix}target.b{b}.masks"] for b in range(meta["batch_size"])]
    return predictions, mask_labels, prefix


def layer_names(meta):
    """Recorded layer name of each entry of our `predictions` list (stack index order)."""
    return {index: name for name, index in meta["layer_name_to_stack_index"].items()}


class RecordedPointSampler(HyperSegPointSampler):
    """Serves the recorded matcher points and the recorded loss points, in the criterion's layer order."""

    def __init__(self, tensors, meta, prefix):
        order = meta["layer_order_in_criterion"]
        batch = range(meta["batch_size"])
        self.matching = [tensors[f"{prefix}points.matcher.{name}.b{b}"] for name in order for b in batch]
        self.loss = [tensors[f"{prefix}points.loss_used.{name}"] for name in order]

    def matching_points(self, num_points, device):
        points = self.matching.pop(0)
        assert points.shape == (1, num_points, 2)
        return points

    def importance_points(self, logits, num_points, oversample_ratio, importance_sample_ratio):
        points = self.loss.pop(0)
        assert points.shape == (logits.shape[0], num_points, 2)
        return points


class RawDrawSampler(HyperSegPointSampler):
    """Serves the recorded raw `torch.rand` draws (`meta["rng_call_order"]`) to our own importance sampling and
    keeps the loss points it produces."""

    def __init__(self, tensors, meta):
        self.draws = [(tensors[name], tuple(shape)) for name, shape in meta["rng_call_order"]]
        self.loss_points = []

    def uniform(self, size, device):
        draw, shape = self.draws.pop(0)
        assert tuple(size) == shape
        return draw

    def importance_points(self, logits, num_points, oversample_ratio, importance_sample_ratio):
        points = super().importance_points(logits, num_points, oversample_ratio, importance_sample_ratio)
        self.loss_points.append(points)
        return points


def frames_of(meta):
    return [None] if "num_key_frames_T" not in meta else list(range(meta["num_key_frames_T"]))


def assert_matches_recorded(indices, tensors, meta, prefix, layers=None):
    names = layer_names(meta)
    for layer, per_image in enumerate(indices):
        if layers is not None and names[layer] not in layers:
            continue
        for b, (query, target) in enumerate(per_image):
            key = f"{prefix}match.{names[layer]}.b{b}"
            assert torch.equal(query, tensors[f"{key}.query"]), key
            assert torch.equal(target, tensors[f"{key}.target"]), key


def weighted_sums(weighted):
    """Per-term sums over the layers, as the original training code forms them (llava_phi.py:999-1031, 1216-1250)."""
    return {
        name: sum(value for key, value in weighted.items() if key.startswith(name))
        for name in ("loss_mask", "loss_dice", "loss_SEG_class")
    }


# ----------------------------------------------------------------------------------------------- parity, recorded


@pytest.mark.parametrize("case", [CASE_F, CASE_G])
def test_parity_with_recorded_points(case):
    tensors, meta = load_case(case)
    names = layer_names(meta)
    frame_mask_losses = []
    for frame in frames_of(meta):
        predictions, mask_labels, prefix = frame_inputs(tensors, meta, frame)
        criterion = criterion_from_meta(meta, RecordedPointSampler(tensors, meta, prefix))

        assert_close_to_reference(
            criterion.get_num_masks(mask_labels, torch.device("cpu")), tensors[f"{prefix}num_masks"], "num_masks"
        )
        losses, indices = criterion(predictions, mask_labels, return_indices=True)
        assert_matches_recorded(indices, tensors, meta, prefix)

        unweighted = f"{prefix}loss.unweighted."
        recorded_keys = {name[len(unweighted) :] for name in tensors if name.startswith(unweighted)}
        assert set(losses) == recorded_keys == set(meta["weight_dict"])
        weighted = criterion.get_weighted_loss_dict(losses)
        for key in recorded_keys:
            assert_close_to_reference(losses[key], tensors[f"{prefix}loss.unweighted.{key}"], f"{prefix}{key}")
            reference = tensors[f"{prefix}loss.weighted.{key}"]
            assert_close_to_reference(weighted[key], reference, f"{prefix}{key} weighted")

        # the recorded cost matrices too (transformers' pair-wise BCE sums in another order: ~1e-7)
        for layer, prediction in enumerate(predictions):
            for b, masks in enumerate(mask_labels):
                points = tensors[f"{prefix}points.matcher.{names[layer]}.b{b}"]
                cost = criterion.matcher.cost_matrix(prediction["masks_queries_logits"][b], masks, points)
                reference = tensors[f"{prefix}cost.{names[layer]}.b{b}"]
                assert ((cost - reference).abs() <= 1e-5 * reference.abs().clamp(min=1)).all()

        sums = weighted_sums(weighted)
        if frame is None:  # reason_seg image batch: [SEG] terms logged as loss_SEG_class, loss_rvos_class = 0
            seg_term, rvos_term = sums["loss_SEG_class"], 0.0
        else:  # train_rvos: the [SEG] terms are accumulated into loss_rvos_class
            seg_term, rvos_term = 0.0, sums["loss_SEG_class"]
        mask_loss = sums["loss_mask"] + sums["loss_dice"] + seg_term + rvos_term
        recorded_sums = {
            "loss_mask": sums["loss_mask"],
            "loss_dice": sums["loss_dice"],
            "loss_rvos_class": rvos_term,
            "mask_loss": mask_loss,
        }
        for name, value in recorded_sums.items():
            assert_close_to_reference(value, tensors[f"{prefix}loss.sum.{name}"], f"{prefix}loss.sum.{name}")
        if frame is None:
            assert_close_to_reference(seg_term, tensors["loss.sum.loss_SEG_class"], "loss.sum.loss_SEG_class")
        frame_mask_losses.append(mask_loss)

    if case == CASE_F:  # reason_seg batches add the next-token LM loss
        lm = meta["lm"]
        llm_loss = ForCausalLMLoss(
            tensors["input.lm_logits"], tensors["input.lm_labels"], vocab_size=lm["V"], ignore_index=lm["ignore_index"]
        )
        assert_close_to_reference(llm_loss, tensors["loss.sum.llm_loss"], "llm_loss")
        assert_close_to_reference(llm_loss + frame_mask_losses[0], tensors["loss.sum.loss"], "loss")
    else:  # video: per-frame mask losses summed, no LM loss
        assert_close_to_reference(sum(frame_mask_losses), tensors["loss.total"], "loss.total")


@pytest.mark.parametrize("case", [CASE_F, CASE_G])
def test_own_importance_sampling_on_recorded_draws(case):
    """The raw draws, served to our own importance sampling (topk of -|logit|), give the recorded loss points."""
    tensors, meta = load_case(case)
    sampler = RawDrawSampler(tensors, meta)
    criterion = criterion_from_meta(meta, sampler)
    for frame in frames_of(meta):
        predictions, mask_labels, prefix = frame_inputs(tensors, meta, frame)
        sampler.loss_points.clear()
        losses = criterion(predictions, mask_labels)
        for name, points in zip(meta["layer_order_in_criterion"], sampler.loss_points):
            assert torch.equal(points, tensors[f"{prefix}points.loss_used.{name}"]), f"{prefix}{name}"
        for key, value in losses.items():
            assert_close_to_reference(value, tensors[f"{prefix}loss.unweighted.{key}"], f"{prefix}{key}")
    assert sampler.draws == []


@pytest.mark.parametrize("case", [CASE_F, CASE_G])
def test_own_rng_seeded_as_recorded(case):
    """Our points come from the default generator in the original's draw order: seeded like the recording
    (`torch.manual_seed(0)` once before the criterion / the frame loop), matches and losses are the recorded ones."""
    tensors, meta = load_case(case)
    criterion = criterion_from_meta(meta)
    torch.manual_seed(meta["criterion_seed"])
    for frame in frames_of(meta):
        predictions, mask_labels, prefix = frame_inputs(tensors, meta, frame)
        losses, indices = criterion(predictions, mask_labels, return_indices=True)
        assert_matches_recorded(indices, tensors, meta, prefix)
        for key, value in losses.items():
            assert_close_to_reference(value, tensors[f"{prefix}loss.unweighted.{key}"], f"{prefix}{key}")


@pytest.mark.parametrize("case", [CASE_F, CASE_G])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_own_rng_other_seeds_match(case, seed):
    """With independent points (explicit generator), the matches still agree wherever the prediction carries the
    target. The fixture's layers aux0 / aux1 are near-noise by construction (README: logits move from noise at layer 0
    toward the target), so with 256 points their matches depend on the draw; they are excluded."""
    tensors, meta = load_case(case)
    criterion = criterion_from_meta(meta, HyperSegPointSampler(torch.Generator().manual_seed(seed)))
    informative = [name for name in meta["layer_order_in_criterion"] if name not in ("aux0", "aux1")]
    for frame in frames_of(meta):
        predictions, mask_labels, prefix = frame_inputs(tensors, meta, frame)
        _, indices = criterion(predictions, mask_labels, return_indices=True)
        assert_matches_recorded(indices, tensors, meta, prefix, layers=informative)


# ------------------------------------------------------------------------------------------ synthetic, PSALM terms


def pixel_center_points(side):
    """`(x, y)` pixel centres of a side x side grid: with align_corners=False each samples exactly one pixel."""
    centers = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    y, x = torch.meshgrid(centers, centers, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)[None]


def synthetic_batch(generator, side=8, num_queries=5, num_classes=4, targets_per_image=(2, 1)):
    masks = [(torch.rand(n, side, side, generator=generator) > 0.5).to(torch.uint8) for n in targets_per_image]
    labels = [torch.randint(0, num_classes - 1, (n,), generator=generator) for n in targets_per_image]
    def logits(*shape):
        return torch.randn(*shape, generator=generator, requires_grad=True)

    batch_size = len(targets_per_image)
    prediction = {
        "masks_queries_logits": logits(batch_size, num_queries, side, side),
        "seg_queries_logits": logits(batch_size, num_queries),
        "class_queries_logits": logits(batch_size, num_queries, num_classes),
        "region_queries_logits": [logits(n, num_queries) for n in targets_per_image],
    }
    return prediction, masks, labels


def seeded_criterion(seed=0, **kwargs):
    """A criterion on 64 points drawn from its own generator."""
    sampler = HyperSegPointSampler(torch.Generator().manual_seed(seed))
    return HyperSegLoss(num_points=64, point_sampler=sampler, **kwargs)


def direct_weighted_bce(logits, targets, pos_weight):
    """mean of -(pos_weight * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))), one entry at a time."""
    total = 0.0
    for x, y in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1.0 / (1.0 + math.exp(-x))
        total += -(pos_weight * y * math.log(p) + (1.0 - y) * math.log(1.0 - p))
    return total / logits.numel()


def test_matcher_cost_direct_and_class_cost_decides():
    """Cost = 5 * mean BCE - 2 * softmax[q, label] + 5 * dice(+1 smoothing), on points sampling exact pixels."""
    generator = torch.Generator().manual_seed(0)
    prediction, masks, labels = synthetic_batch(generator)
    matcher = HyperSegHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    logits = prediction["masks_queries_logits"][0].detach()
    class_logits = prediction["class_queries_logits"][0].detach()
    cost = matcher.cost_matrix(logits, masks[0], pixel_center_points(8), class_logits, labels[0])
    probs = class_logits.softmax(-1)
    for q in range(logits.shape[0]):
        x = logits[q].flatten().tolist()
        for j in range(masks[0].shape[0]):
            y = masks[0][j].flatten().float().tolist()
            sig = [1.0 / (1.0 + math.exp(-v)) for v in x]
            bce = sum(-(t * math.log(s) + (1 - t) * math.log(1 - s)) for s, t in zip(sig, y)) / len(x)
            dice = 1 - (2 * sum(s * t for s, t in zip(sig, y)) + 1) / (sum(sig) + sum(y) + 1)
            expected = 5 * bce - 2 * probs[q, labels[0][j]].item() + 5 * dice
            assert abs(cost[q, j].item() - expected) <= 1e-5 * max(1.0, abs(expected))

    # identical masks for every query: only the class cost separates them
    same_masks = logits[:1].expand(5, -1, -1)[None]
    class_logits = torch.full((1, 5, 4), -4.0)
    class_logits[0, 3, 1] = class_logits[0, 1, 2] = 4.0
    two_targets = [torch.stack([masks[0][0], masks[0][0]])]
    (query, target), = matcher(same_masks, two_targets, class_logits, [torch.tensor([2, 1])])
    assert query.tolist() == [1, 3] and target.tolist() == [0, 1]


@pytest.mark.parametrize("background_class_weight", [0.1, 1.0])
def test_class_name_loss_direct(background_class_weight):
    """Unmatched queries -> last class; CE class weights 1 except background; weighted mean over B * Q."""
    prediction, masks, labels = synthetic_batch(torch.Generator().manual_seed(1))
    prediction = {key: prediction[key] for key in ("masks_queries_logits", "class_queries_logits")}
    criterion = seeded_criterion(background_class_weight=background_class_weight)
    losses, (indices,) = criterion([prediction], masks, labels, return_indices=True)
    assert set(losses) == {"loss_mask", "loss_dice", "loss_class_name_class"}

    logits = prediction["class_queries_logits"].detach()
    numerator = denominator = 0.0
    for b in range(logits.shape[0]):
        matched = dict(zip(indices[b][0].tolist(), labels[b][indices[b][1]].tolist()))
        for q in range(logits.shape[1]):
            target = matched.get(q, logits.shape[-1] - 1)
            weight = background_class_weight if target == logits.shape[-1] - 1 else 1.0
            log_norm = math.log(sum(math.exp(v) for v in logits[b, q].tolist()))
            numerator += weight * (log_norm - logits[b, q, target].item())
            denominator += weight
    assert_close_to_reference(losses["loss_class_name_class"], numerator / denominator, "loss_class_name_class")
    weighted = criterion.get_weighted_loss_dict(losses)["loss_class_name_class"]
    assert_close_to_reference(weighted, 2 * numerator / denominator, "weighted loss_class_name_class")


def test_seg_and_region_losses_direct():
    """pos_weight = (number of logits - num_masks) / num_masks; region target [j, i] = 1 for matched (query i,
    target j)."""
    prediction, masks, labels = synthetic_batch(torch.Generator().manual_seed(2))
    prediction.pop("class_queries_logits")
    criterion = seeded_criterion()
    losses, (indices,) = criterion([prediction], masks, return_indices=True)
    assert set(losses) == {"loss_mask", "loss_dice", "loss_SEG_class", "loss_region_class"}
    num_masks = 3

    seg_logits = prediction["seg_queries_logits"].detach()
    seg_target = torch.zeros_like(seg_logits)
    region_logits = [logits.detach() for logits in prediction["region_queries_logits"]]
    region_target = [torch.zeros_like(logits) for logits in region_logits]
    for b, (query, target) in enumerate(indices):
        for i, j in zip(query.tolist(), target.tolist()):
            seg_target[b, i] = 1
            region_target[b][j, i] = 1
    expected_seg = direct_weighted_bce(seg_logits, seg_target, (seg_logits.numel() - num_masks) / num_masks)
    all_region_logits = torch.cat([logits.flatten() for logits in region_logits])
    all_region_target = torch.cat([target.flatten() for target in region_target])
    pos_weight = (all_region_logits.numel() - num_masks) / num_masks
    expected_region = direct_weighted_bce(all_region_logits, all_region_target, pos_weight)
    assert_close_to_reference(losses["loss_SEG_class"], expected_seg, "loss_SEG_class")
    assert_close_to_reference(losses["loss_region_class"], expected_region, "loss_region_class")

    prediction["region_queries_logits"] = [region_logits[0][:1], region_logits[1]]
    with pytest.raises(ValueError, match="region prompt j"):
        criterion([prediction], masks)


@pytest.mark.parametrize("targets_per_image", [(2, 0), (0, 0)])
def test_image_without_target_gives_finite_loss(targets_per_image):
    prediction, masks, labels = synthetic_batch(torch.Generator().manual_seed(3), targets_per_image=targets_per_image)
    layers = [prediction, {key: value for key, value in prediction.items()}]
    criterion = seeded_criterion()
    losses, indices = criterion(layers, masks, labels, return_indices=True)
    assert [len(query) for query, _ in indices[-1]] == list(targets_per_image)
    total = sum(criterion.get_weighted_loss_dict(losses).values())
    assert torch.isfinite(total)
    total.backward()
    for value in losses.values():
        assert torch.isfinite(value)
    for key in ("masks_queries_logits", "seg_queries_logits", "class_queries_logits"):
        assert torch.isfinite(prediction[key].grad).all()
    if sum(targets_per_image) == 0:
        assert criterion.get_num_masks(masks, torch.device("cpu")) == 1.0
        assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0


def test_deep_supervision_keys_dtypes_and_generator():
    """Final layer last in the input, no suffix; layer i -> `_i`; bf16 is upcast; float and uint8 targets agree;
    an explicit generator reproduces and leaves the global generator alone."""
    prediction, masks, _ = synthetic_batch(torch.Generator().manual_seed(4))
    prediction = {key: prediction[key].detach() for key in ("masks_queries_logits", "seg_queries_logits")}
    layers = [{key: value + layer for key, value in prediction.items()} for layer in range(3)]

    state = torch.get_rng_state()
    losses = seeded_criterion()(layers, masks)
    assert torch.equal(state, torch.get_rng_state())
    keys = ("loss_mask", "loss_dice", "loss_SEG_class")
    assert set(losses) == {f"{key}{suffix}" for key in keys for suffix in ("", "_0", "_1")}
    # the last entry is the final layer: alone, it draws the same points and gives the same unsuffixed terms
    final_only = seeded_criterion()(layers[-1:], masks)
    assert all(torch.equal(losses[key], final_only[key]) for key in final_only)

    float_targets = seeded_criterion()(layers, [m.float() for m in masks])
    assert all(torch.equal(losses[key], float_targets[key]) for key in losses)
    bf16_layers = [{key: value.bfloat16() for key, value in layer.items()} for layer in layers]
    upcast_layers = [{key: value.float() for key, value in layer.items()} for layer in bf16_layers]
    bf16, upcast = seeded_criterion()(bf16_layers, masks), seeded_criterion()(upcast_layers, masks)
    assert all(value.dtype == torch.float32 and torch.equal(value, upcast[key]) for key, value in bf16.items())
    assert not torch.equal(seeded_criterion(1)(layers, masks)["loss_mask"], losses["loss_mask"])
