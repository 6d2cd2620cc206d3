"""The nearest-neighbour vote as a ranker: the ``k`` pool items nearest by BM25 vote for their labels.

Each neighbour's vote weighs by its retrieval score. A single-choice control's scores are the vote shares; a
multiple-choice control's are, per label, the weighted share of neighbours carrying it. An input that shares no
word with the pool gets the pool's label frequencies. This is what copying the nearest annotations' labels does
(``bench/knn.py``), made a ranker so it can be calibrated, narrow the label set and answer like the linear one.

The BM25 weights (``retrieval.BM25``, the retriever demos use) are laid out once as a sparse document × term
matrix, so scoring a query is one sparse product instead of a Python loop over the pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from optimizer.serving.retrieval import BM25, tokenize


class NeighbourModel:
    def __init__(self, texts: Sequence[str], y: np.ndarray, multiple: bool, k: int) -> None:
        self.y = y.astype(np.float64)
        self.multiple = multiple
        self.k = k
        n = len(texts)
        self.prior = self.y.sum(axis=0) / (self.y.sum() if not multiple else max(1, n)) if n else self.y.sum(axis=0)
        index = BM25(texts)
        self.terms = {term: i for i, term in enumerate(sorted(index.idf))}
        rows, cols, values = [], [], []
        for d, (counts, length) in enumerate(zip(index.docs, index.lengths, strict=True)):
            norm = index.k1 * (1 - index.b + index.b * length / index.avg) if index.avg else index.k1
            for term, tf in counts.items():
                rows.append(d)
                cols.append(self.terms[term])
                values.append(index.idf[term] * tf * (index.k1 + 1) / (tf + norm))
        self.weights = sparse.csr_matrix((values, (rows, cols)), shape=(n, len(self.terms)))

    def _query(self, texts: Sequence[str]) -> sparse.csr_matrix:
        rows, cols = [], []
        for i, text in enumerate(texts):
            found = {self.terms[t] for t in tokenize(text) if t in self.terms}
            rows += [i] * len(found)
            cols += sorted(found)
        return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(self.terms)))

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        if not self.terms:
            return np.tile(self.prior, (len(texts), 1))
        relevance = (self._query(texts) @ self.weights.T).toarray()
        out = np.empty((len(texts), self.y.shape[1]))
        for i, row in enumerate(relevance):
            # Ties break by pool position, as retrieval's do, so the vote is deterministic.
            order = np.lexsort((np.arange(len(row)), -row))[: self.k]
            order = order[row[order] > 0]
            if not len(order):
                out[i] = self.prior
                continue
            votes = row[order] @ self.y[order]
            out[i] = votes / (row[order].sum() if self.multiple else max(votes.sum(), 1e-12))
        return out
