"""F1 as an offline `evaluate` module (same call as the Hub's "f1": average="binary"|"macro"|"micro"|"weighted")."""

import datasets
import evaluate
import numpy as np

from adapters_kit.evaluation.metrics import counts_metrics

_DESCRIPTION = "F1 from a confusion matrix; macro averages over classes present in references or predictions."


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description="predictions, references: int class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, average="binary", pos_label=1):
        p, r = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        k = int(max(p.max(initial=0), r.max(initial=0), pos_label)) + 1
        m = counts_metrics(np.bincount(r * k + p, minlength=k * k).reshape(k, k), [str(i) for i in range(k)])
        if average == "binary":
            return {"f1": m["per_class"][str(pos_label)]["f1"]}
        return {"f1": m[f"f1_{average}"]}
