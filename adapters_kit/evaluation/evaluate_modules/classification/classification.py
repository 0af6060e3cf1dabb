"""adapters_kit classification metrics as an offline `evaluate` module.

    import evaluate
    from adapters_kit import evaluate_module
    metric = evaluate.load(evaluate_module("classification"))
    metric.compute(predictions=logits, references=labels, labels=["neg", "pos"])
"""

import datasets
import evaluate
import numpy as np

from adapters_kit.evaluation.metrics import StreamingMetrics

_DESCRIPTION = """Accuracy, precision/recall/F1 (macro, micro, weighted, per class), confusion matrix, top-k accuracy,
ROC-AUC (binary, or one-vs-rest macro), log-loss and expected calibration error, from logits (softmax is applied)
and integer references. Computed by adapters_kit's streaming accumulator; no Hub access."""
_KWARGS = """
Args:
    predictions: list of per-example logit (or log-probability) vectors, shape (n, num_classes).
    references: list of int class ids.
    labels: optional class names (default "0", "1", ...).
    top_k: k of top_k_accuracy (default 5).
    ece_bins: number of equal-width confidence bins for ECE (default 15).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, labels=None, top_k=5, ece_bins=15):
        logits = np.asarray(predictions, dtype=np.float64)
        names = list(labels) if labels is not None else [str(i) for i in range(logits.shape[1])]
        acc = StreamingMetrics(names, top_k=top_k, ece_bins=ece_bins)
        acc.update(logits, np.asarray(references))
        return acc.compute()
