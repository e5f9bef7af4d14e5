"""
What every saved HyperSeg folder declares so that transformers can load it as remote code, in a Python process where
the `hyperseg` package is not installed (`trust_remote_code=True`).

`save_pretrained` copies the module defining the model, and every module it reaches through relative imports, flat
into the folder (transformers' `custom_object_save`); the pipeline module is reached from here, so it travels too.
This mixin completes what transformers writes into `config.json`: every Auto class that can load the model, not only
the one it was loaded with, and the `image-segmentation` pipeline of the folder.
"""

from .pipeline_hyperseg import HyperSegSegmentationPipeline

# the Auto classes that load HyperSegForUniversalSegmentation; the stock `image-segmentation` pipeline loads a path
# through AutoModelForImageSegmentation
MODEL_AUTO_CLASSES = ("AutoModel", "AutoModelForUniversalSegmentation", "AutoModelForImageSegmentation")
PIPELINE_TASK = "image-segmentation"


def class_reference(cls: type) -> str:
    """`"module.Class"`, the form of `auto_map` and `custom_pipelines` entries (remote modules are flat)."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


class HyperSegHubMixin:
    """Makes `save_pretrained` write a complete `auto_map` and the folder's `custom_pipelines` into `config.json`."""

    # with `_auto_class` set, `PreTrainedModel.save_pretrained` copies the remote code (see `custom_object_save`)
    _auto_class = "AutoModelForUniversalSegmentation"

    def save_pretrained(self, save_directory, *args, **kwargs):
        model_reference = class_reference(type(self))
        self.config.auto_map = {
            "AutoConfig": class_reference(type(self.config)),
            **dict.fromkeys(MODEL_AUTO_CLASSES, model_reference),
        }
        self.config.custom_pipelines = {
            PIPELINE_TASK: {
                "impl": class_reference(HyperSegSegmentationPipeline),
                "pt": ["AutoModelForImageSegmentation"],
                "type": "multimodal",
            }
        }
        return super().save_pretrained(save_directory, *args, **kwargs)
