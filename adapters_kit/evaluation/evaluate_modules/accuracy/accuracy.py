"""Accuracy as an offline `evaluate` module (same call as the Hub's "accuracy")."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of predictions equal to the references."


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description="predictions, references: int class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
