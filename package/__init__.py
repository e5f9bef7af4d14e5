"""
HyperSeg / InstructSeg as a Hugging Face Transformers model.

The project's folders are the subpackages of `hyperseg` (`hyperseg.modeling`, `hyperseg.processing`,
`hyperseg.conversion`, `hyperseg.evaluation`, `hyperseg.training`, `hyperseg.video`, ...; see `setup.cfg`). This
module only re-exports their main entry points, lazily, so that `import hyperseg` stays cheap and importing one
subpackage never pulls in the others:

```python
from hyperseg import HyperSegForUniversalSegmentation, HyperSegProcessor, segment_video
```
"""

import importlib
from typing import TYPE_CHECKING


# public name -> the subpackage that defines it
_LAZY_EXPORTS = {
    "HyperSegConfig": "hyperseg.modeling",
    "HyperSegForUniversalSegmentation": "hyperseg.modeling",
    "HyperSegImageProcessor": "hyperseg.processing",
    "HyperSegProcessor": "hyperseg.processing",
    "VideoSession": "hyperseg.video",
    "segment_video": "hyperseg.video",
}

__all__ = sorted(_LAZY_EXPORTS)

if TYPE_CHECKING:
    from hyperseg.modeling import HyperSegConfig, HyperSegForUniversalSegmentation
    from hyperseg.processing import HyperSegImageProcessor, HyperSegProcessor
    from hyperseg.video import VideoSession, segment_video


def __getattr__(name: str):
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module 'hyperseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
