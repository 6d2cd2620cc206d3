"""Nearest-demo retrieval with BM25 over word tokens: no model, no network, deterministic.

Retrieved few-shot demos are the single biggest win for small labelling models (../shared/DESIGN.md §6). BM25 is
lexical, so it runs anywhere the backend runs, and an index is built once per demo pool and cached by the policy
version.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed list of documents; ``top(query, k)`` returns document indices, best first."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.raw = list(documents)
        self.docs = [Counter(tokenize(d)) for d in documents]
        self.lengths = [sum(c.values()) for c in self.docs]
        self.avg = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter()
        for doc in self.docs:
            df.update(doc.keys())
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = [t for t in set(tokenize(query)) if t in self.idf]
        out = []
        for doc, length in zip(self.docs, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / self.avg) if self.avg else self.k1
            out.append(sum(self.idf[t] * doc[t] * (self.k1 + 1) / (doc[t] + norm) for t in terms if t in doc))
        return out

    def top(self, query: str, k: int) -> list[int]:
        """The ``k`` best documents for ``query``, never the query itself (a gold item must not be its own demo)."""
        scores = self.scores(query)
        # Ties break by position, so retrieval is deterministic.
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [i for i in order if self.raw[i] != query][:k]


@lru_cache(maxsize=64)
def index_for(documents: tuple[str, ...]) -> BM25:
    """One index per demo pool; the pool is immutable, so caching by content is always correct."""
    return BM25(documents)
