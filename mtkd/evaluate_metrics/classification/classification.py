"""Classification metrics for mtkd tasks as a local `evaluate` module (hub metrics do not load offline).

Computed with scikit-learn: accuracy, macro-F1, F1 of the positive class (binary tasks),
and Matthews correlation.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

_DESCRIPTION = "Accuracy, macro-F1, positive-class F1 (binary) and Matthews correlation, via scikit-learn."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: gold class ids.
    num_classes: number of classes of the task (F1 of class 1 is reported only when 2).
Returns:
    accuracy, macro_f1, mcc, and f1 (binary tasks only).
"""


class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_classes=2):
        labels = list(range(num_classes))
        out = {
            "accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
            "mcc": float(matthews_corrcoef(references, predictions)),
        }
        if num_classes == 2:
            out["f1"] = float(f1_score(references, predictions, pos_label=1, average="binary", zero_division=0))
        return out
