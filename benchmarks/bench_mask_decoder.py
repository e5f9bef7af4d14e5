"""
The mask decoder alone at real size: transformers' Mask2Former mask predictor and `nn.MultiheadAttention` against
ours (`SharedPixelMaskPredictor`, `MaskedCrossAttention`), with the same weights, alternating in one process.

    python benchmarks/bench_mask_decoder.py [--dtype bfloat16] [--repeats 2] [--retain-freed-memory]

Inputs are random and of the sizes of a 1024x1024 model input: mask features at 1/4 (256x256), decoder keys at 1/32,
1/16 and 1/8. Three cases: one prompt; eight prompts on one image (features expanded with stride 0, as the model
passes them); eight images. Prints the best time of each implementation and the largest difference of the final mask
logits between them, next to the largest logit.
"""

import argparse
import copy
import time

import torch
from bench_inference import retain_freed_memory
from torch import nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMaskPredictor

from hyperseg.modeling import HyperSegConfig
from hyperseg.modeling.mask_decoder import HyperSegMaskDecoder

CASES = (("one prompt", 1, True), ("eight prompts on one image", 8, True), ("eight images", 8, False))


def with_transformers_attention(decoder: HyperSegMaskDecoder, config: HyperSegConfig) -> HyperSegMaskDecoder:
    """A copy of `decoder` computing with transformers' mask predictor and `nn.MultiheadAttention` (same weights)."""
    reference = copy.deepcopy(decoder)
    ours = reference.decoder.mask_predictor
    predictor = Mask2FormerMaskPredictor(ours.hidden_size, ours.num_heads, config.mask_feature_size)
    predictor.load_state_dict(ours.state_dict())
    reference.decoder.mask_predictor = predictor
    for layer in reference.decoder.layers:
        attention = nn.MultiheadAttention(layer.cross_attn.embed_dim, layer.cross_attn.num_heads)
        attention.load_state_dict(layer.cross_attn.state_dict())
        layer.cross_attn = attention
    return reference.to(next(decoder.parameters()).dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--retain-freed-memory", action="store_true", help="see bench_inference.py")
    args = parser.parse_args(argv)
    if args.retain_freed_memory:
        retain_freed_memory()
    dtype = getattr(torch, args.dtype)
    config = HyperSegConfig.hyperseg_3b(
        seg_token_id=1, image_token_id=2, temporal_token_id=3, query_token_id=4, region_token_id=5
    )
    torch.manual_seed(0)
    decoders = {"ours": HyperSegMaskDecoder(config).to(dtype).eval()}
    decoders["transformers"] = with_transformers_attention(decoders["ours"], config).eval()
    hidden = config.mask_decoder_hidden_size
    mask_features = torch.randn(1, config.mask_feature_size, 256, 256, dtype=dtype)
    levels = [torch.randn(1, config.pixel_decoder_hidden_size, size, size, dtype=dtype) for size in (32, 64, 128)]
    threads = torch.get_num_threads()
    print(f"mask decoder, {args.dtype}, {threads} threads, retain freed memory: {args.retain_freed_memory}")
    for name, batch_size, shared in CASES:
        def batch(features):  # (1, ...) -> (batch_size, ...): a stride-0 view for shared features, else copies
            return features.expand(batch_size, -1, -1, -1) if shared else features.repeat(batch_size, 1, 1, 1)

        queries = torch.randn(batch_size, config.num_queries, hidden, dtype=dtype)
        seg_embeddings = torch.randn(batch_size, hidden, dtype=dtype)
        seconds, masks = {key: [] for key in decoders}, {}
        for _ in range(args.repeats):
            for key, decoder in decoders.items():
                with torch.inference_mode():
                    start = time.perf_counter()
                    predictions = decoder(
                        queries, batch(mask_features), [batch(level) for level in levels], seg_embeddings=seg_embeddings
                    )
                    seconds[key].append(time.perf_counter() - start)
                masks[key] = predictions[-1].masks_queries_logits.float()
        difference = (masks["ours"] - masks["transformers"]).abs().max().item()
        scale = masks["transformers"].abs().max().item()
        print(
            f"  {name:<28} transformers {min(seconds['transformers']):6.2f} s   ours {min(seconds['ours']):6.2f} s"
            f"   max |mask logit difference| {difference:.2e} (largest |logit| {scale:.1f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
