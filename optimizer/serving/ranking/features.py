"""Text → sparse features for the linear ranker: TF-IDF over word 1-2-grams and character 2-5-grams.

Word n-grams carry the vocabulary of a label ("card", "top up"); character n-grams inside word boundaries carry its
stems and misspellings ("arriv", "transfr"), which matter with a hundred short examples. Both are sublinear TF-IDF
(``1 + log tf``, times idf, each block L2-normalised), fitted on the ranker's own pool by scikit-learn's
``TfidfVectorizer``, so the features are a deterministic function of the pool's texts.

A batch is transformed by the vectorizers themselves. A single task (what serving does) is transformed here from
their fitted vocabulary and idf, with their own analyzers: the same numbers (a test holds them equal), without the
per-call validation and matrix plumbing that on one short task cost more than the analysis itself and would break
the ranker's 2 ms budget.

A reward-scoring (judge) input is a prompt and a response (``labelstudio.judge.pair_parts``). Whether a response
suits its prompt is a property of the pair, which a bag of words over both cannot see, so pair features are added:
the element-wise product of the two texts' TF-IDF vectors (the n-grams they share, weighted) and their cosine
similarities. A weight per shared n-gram and a weight on "how much they share" are what a linear reward model can
learn from a few dozen grades.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

# Char n-grams grow with the pool; the caps bound a built ranker's memory (coefficients are labels × features).
MAX_CHAR_FEATURES = 30_000
MAX_WORD_FEATURES = 20_000

# From this many texts on, the vectorizers' own (batch) transform is the faster path.
BATCH = 8

# The two cosines are dense summaries competing with thousands of sparse n-gram weights under one L2 penalty;
# scaled up, they are cheaper for the model to use (on the graded BANKING77 set: held-out balanced accuracy
# 0.63 → 0.66 at 60 grades).
SIMILARITY_WEIGHT = 5.0

PairSplitter = Callable[[str], tuple[str, str] | None]
Vector = dict[int, float]


def vectorizers() -> tuple[TfidfVectorizer, TfidfVectorizer]:
    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, 2),
        sublinear_tf=True,
        token_pattern=r"(?u)\b\w+\b",
        max_features=MAX_WORD_FEATURES,
    )
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, max_features=MAX_CHAR_FEATURES)
    return word, char


class _Block:
    """One fitted vectorizer as (analyzer, vocabulary, idf): enough to compute its TF-IDF rows."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.idf = vectorizer.idf_
        self.size = len(self.vocabulary)

    def vector(self, text: str) -> Vector:
        vocabulary = self.vocabulary
        counts = Counter(vocabulary[g] for g in self.analyze(text) if g in vocabulary)
        weights = {j: (1.0 + math.log(tf)) * self.idf[j] for j, tf in counts.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {j: w / norm for j, w in weights.items()} if norm else {}


def _shared(a: Vector, b: Vector) -> Vector:
    if len(b) < len(a):
        a, b = b, a
    return {j: w * b[j] for j, w in a.items() if j in b}


class Features:
    """Fitted on a pool's texts; ``transform`` maps any texts to one CSR row each."""

    def __init__(self, texts: Sequence[str], pair: PairSplitter | None = None) -> None:
        self.pair = pair
        corpus = list(texts)
        if pair is not None:
            # The vocabulary covers both halves: shared n-grams must exist in it to be multiplied.
            corpus += [part for text in texts for part in (pair(text) or ())]
        self.vectorizers = [v.fit(corpus) for v in vectorizers()]
        self.blocks = [_Block(v) for v in self.vectorizers]
        self.width = sum(b.size for b in self.blocks) * (2 if pair else 1) + (len(self.blocks) if pair else 0)

    def row(self, text: str) -> Vector:
        """One input's features: column → value."""
        out: Vector = {}
        offset = 0
        for block in self.blocks:
            out.update({offset + j: w for j, w in block.vector(text).items()})
            offset += block.size
        if self.pair is None:
            return out
        prompt, response = self.pair(text) or (text, "")
        for k, block in enumerate(self.blocks):
            shared = _shared(block.vector(prompt), block.vector(response))
            out.update({offset + j: w for j, w in shared.items()})
            offset += block.size
            # TF-IDF rows are L2-normalised, so the sum of the products is the cosine.
            out[sum(b.size for b in self.blocks) * 2 + k] = SIMILARITY_WEIGHT * sum(shared.values())
        return out

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        if len(texts) >= BATCH:
            return self._batch(texts)
        indptr, indices, data = [0], [], []
        for text in texts:
            row = self.row(text)
            columns = sorted(row)
            indices += columns
            data += [row[j] for j in columns]
            indptr.append(len(indices))
        return sparse.csr_matrix(
            (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
            shape=(len(texts), self.width),
        )

    def _batch(self, texts: Sequence[str]) -> sparse.csr_matrix:
        blocks = [v.transform(texts) for v in self.vectorizers]
        if self.pair is None:
            return sparse.hstack(blocks, format="csr")
        parts = [self.pair(text) or (text, "") for text in texts]
        shared = [
            v.transform([p for p, _ in parts]).multiply(v.transform([r for _, r in parts])).tocsr()
            for v in self.vectorizers
        ]
        cosines = np.hstack([np.asarray(m.sum(axis=1)) for m in shared]) * SIMILARITY_WEIGHT
        return sparse.hstack([*blocks, *shared, sparse.csr_matrix(cosines)], format="csr")
