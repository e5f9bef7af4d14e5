"""`hyperseg.training.finetune` with loss points shared by every mask, for comparing runs split across processes.

The criterion draws its random points per image and per mask in batch order, so a batch split over two processes
draws other points than the whole batch in one process. Here every draw of the same size gives the same points, for
every mask, which makes the loss independent of how the batch is split. The training history is written to
`OUTPUT_DIR/log_history.json`.

    accelerate launch --multi_gpu --num_processes 2 shared_points_finetune.py [finetune arguments]
"""

import json
import sys
from pathlib import Path

import torch

from hyperseg.modeling.loss_hyperseg import HyperSegPointSampler


def shared_uniform(self, size, device):
    """The same points for every mask: one fixed-seed draw of `size[1:]`, repeated along the first dimension."""
    points = torch.rand((1, *size[1:]), generator=torch.Generator().manual_seed(0))
    return points.expand(size).to(device)


HyperSegPointSampler.uniform = shared_uniform

if __name__ == "__main__":
    from hyperseg.training.finetune import main

    trainer = main(sys.argv[1:])
    if trainer.is_world_process_zero():
        (Path(trainer.args.output_dir) / "log_history.json").write_text(json.dumps(trainer.state.log_history))
