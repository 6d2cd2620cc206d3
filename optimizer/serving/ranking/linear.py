"""TF-IDF + logistic regression over one control's labels: multinomial for single choice, one-vs-rest for multiple.

Scores are the model's raw probabilities, one column per label of the control in config order; a label the pool
never shows gets 0 (single choice) or a small smoothed constant (multiple choice), never a guess. Calibration is
not done here (see ``calibration``): these scores only have to rank well.

Prediction is a sparse matrix product and a softmax in NumPy rather than ``predict_proba``: the same arithmetic
without scikit-learn's per-call input validation, which would cost more than the product itself on one task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from optimizer.serving.ranking.features import Features, PairSplitter

MAX_ITER = 1000
# Newton-CG converges in a handful of iterations here, several times faster than L-BFGS to the same accuracy.
SOLVER = "newton-cg"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class LinearModel:
    """Fitted on features ``x`` of a pool (from ``features``) and ``Y``: ``Y[i, j]`` says whether item ``i`` carries
    label ``j``. :func:`fit` makes the features too; cross-validation fits several of these on one fold's features."""

    def __init__(
        self,
        features: Features,
        x,
        y: np.ndarray,
        multiple: bool,
        c: float,
        *,
        balanced: bool = False,
        warm: LinearModel | None = None,
    ) -> None:
        self.labels = y.shape[1]
        self.multiple = multiple
        self.features = features
        weight = "balanced" if balanced else None
        # Cross-validation fits C in increasing order on one fold's features: each fit starts from the previous
        # one's solution (a third less work), which ``warm`` hands over. The previous model keeps its own copy.
        self._estimators: dict[int, LogisticRegression] = warm._estimators if warm is not None else {}

        def regression(key: int = -1):
            estimator = self._estimators.get(key) or LogisticRegression(
                solver=SOLVER, max_iter=MAX_ITER, class_weight=weight, warm_start=True
            )
            self._estimators[key] = estimator.set_params(C=c)
            return estimator

        # Rows of coefficients, the label column each row scores, and constants for columns with nothing to learn.
        self.constant = np.zeros(self.labels, dtype=np.float64)
        if multiple:
            rows, cols, bias = [], [], []
            n = y.shape[0]
            for j in range(self.labels):
                column = y[:, j].astype(int)
                positives = int(column.sum())
                if 0 < positives < n:
                    model = regression(j).fit(x, column)
                    rows.append(model.coef_[0])
                    bias.append(model.intercept_[0])
                    cols.append(j)
                else:
                    self.constant[j] = (positives + 0.5) / (n + 1)
            self.coef = np.array(rows, dtype=np.float32).reshape(len(rows), x.shape[1])
            self.intercept = np.array(bias, dtype=np.float64)
            self.columns = np.array(cols, dtype=int)
            return
        target = y.argmax(axis=1)
        present = np.unique(target)
        self.columns = present
        if len(present) == 1:
            self.coef = np.zeros((0, x.shape[1]), dtype=np.float32)
            self.intercept = np.zeros(0)
            self.constant[present[0]] = 1.0
            return
        model = regression().fit(x, target)
        coef, intercept = model.coef_, model.intercept_
        if len(present) == 2:
            # scikit-learn keeps one row for two classes: the second class's log-odds. Two rows give the softmax.
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = np.array(intercept, dtype=np.float64)

    def score_matrix(self, x) -> np.ndarray:
        out = np.tile(self.constant, (x.shape[0], 1))
        if not len(self.columns) or not self.coef.shape[0]:
            return out
        z = np.asarray(x @ self.coef.T, dtype=np.float64) + self.intercept
        out[:, self.columns] = _sigmoid(z) if self.multiple else _softmax(z)
        return out

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return self.score_matrix(self.features.transform(texts))


def fit(
    texts: Sequence[str], y: np.ndarray, multiple: bool, c: float, *, balanced=False, pair: PairSplitter | None = None
) -> LinearModel:
    features = Features(texts, pair)
    model = LinearModel(features, features.transform(texts), y, multiple, c, balanced=balanced)
    model._estimators.clear()  # a served model needs only its coefficients, not scikit-learn's copies of them
    return model
