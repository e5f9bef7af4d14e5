"""Region sampler: pools the projected image features inside each visual-prompt region into one LLM token."""

import torch
from torch import nn


class RegionSampler(nn.Module):
    """
    For each region mask (at the vision-tower input size), the pixels inside it are quantised to the `grid x grid`
    patch grid of the image tokens and de-duplicated; exactly `num_points` of these cells are then drawn (all of them
    plus random repeats when there are fewer, a random subset when there are more), the image-token map is sampled
    bilinearly at those points (`align_corners=True`) and the samples are averaged.

    The draws come from a generator seeded with `seed` for every image, its regions taken in order, so a given image
    and prompts always give the same features, whatever else is in the batch. Pre-drawn points can be passed instead.
    """

    def __init__(self, num_points: int, seed: int):
        super().__init__()
        self.num_points = num_points
        self.seed = seed

    def sample_points(self, region_mask: torch.Tensor, grid_size: int, generator: torch.Generator) -> torch.Tensor:
        """(height, width) mask -> (num_points, 2) (row, col) points in [0, 1)."""
        size = torch.tensor(region_mask.shape, device=region_mask.device)
        pixels = region_mask.nonzero() / size  # (num_pixels, 2), normalised (row, col)
        cells = torch.unique((pixels * grid_size).int(), dim=0) / grid_size  # sorted by (row, col)
        num_cells = cells.shape[0]
        if num_cells < self.num_points:
            repeats = torch.randint(0, num_cells, (self.num_points - num_cells,), generator=generator)
            return torch.cat([cells, cells[repeats.to(cells.device)]])
        if num_cells > self.num_points:
            return cells[torch.randperm(num_cells, generator=generator)[: self.num_points].to(cells.device)]
        return cells

    def forward(
        self,
        image_features: torch.Tensor,
        region_masks: list[torch.Tensor],
        region_points: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """
        Args:
            image_features: (batch, grid*grid, hidden) projected image tokens.
            region_masks: per sample, (num_regions, height, width) binary masks.
            region_points: per sample, (num_regions, num_points, 2) pre-drawn (row, col) points in [0, 1].

        Returns:
            Per sample, (num_regions, hidden) region features.
        """
        batch_size, num_tokens, hidden_size = image_features.shape
        grid_size = int(num_tokens**0.5)
        if len(region_masks) != batch_size:
            raise ValueError(f"got region masks for {len(region_masks)} images but {batch_size} images")
        features = []
        for index, (feature_map, masks) in enumerate(zip(image_features, region_masks)):
            # a fresh generator per image: an image's features do not depend on the rest of the batch
            generator = torch.Generator().manual_seed(self.seed)
            if region_points is not None:
                points = region_points[index].to(feature_map.device, torch.float32)
            else:
                for region, mask in enumerate(masks):
                    if not mask.any():
                        raise ValueError(f"region mask {region} of image {index} is empty")
                points = torch.stack([self.sample_points(mask, grid_size, generator) for mask in masks])
            grid = (2 * points.flip(-1) - 1).unsqueeze(2)  # (regions, points, 1, 2) as (x, y) in [-1, 1]
            feature_map = feature_map.reshape(grid_size, grid_size, hidden_size).permute(2, 0, 1)
            feature_map = feature_map.unsqueeze(0).expand(grid.shape[0], -1, -1, -1).float()
            sampled = nn.functional.grid_sample(feature_map, grid, mode="bilinear", align_corners=True)
            features.append(sampled.squeeze(-1).mean(-1).to(image_features.dtype))  # (regions, hidden)
        return features
