"""adapters_kit: transfer learning with Hugging Face backbones (PEFT adapters and linear probes on accelerate)."""

__version__ = "0.1.0"

from adapters_kit import _moved  # noqa: E402
from adapters_kit.config import TrainConfig, load_config  # noqa: E402
from adapters_kit.errors import UserError  # noqa: E402

_moved.install()

__all__ = ["AdapterTrainer", "Classifier", "DATASETS", "MODELS", "StreamingMetrics", "TrainConfig", "UserError",
           "__version__", "evaluate_module", "evaluate_run", "fast_dropout", "load", "load_config", "load_int8",
           "student_config"]

_LAZY = {"AdapterTrainer": "adapters_kit.trainer", "evaluate_run": "adapters_kit.trainer",
         "StreamingMetrics": "adapters_kit.evaluation.metrics", "evaluate_module": "adapters_kit.evaluation.metrics",
         "Classifier": "adapters_kit.runs.inference", "load": "adapters_kit.runs.inference",
         # the built-in backbones and data sets (`adapters-kit models` / `datasets`): name -> where its files are
         "DATASETS": "adapters_kit.builtin.catalog", "MODELS": "adapters_kit.builtin.catalog",
         # adapters_kit's CPU dropout for any model and loop; the loader of an `export --to int8` folder
         "fast_dropout": "adapters_kit.model.dropout", "load_int8": "adapters_kit.share.export",
         # a student's config from a teacher run folder (knowledge distillation): AdapterTrainer trains it
         "student_config": "adapters_kit.distill.job"}


def __getattr__(name):
    # torch/transformers load only when a training or inference name is first used, keeping `import` and the
    # CLI's flag checking fast.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adapters_kit' has no attribute {name!r}")
