"""Demo changes the loop can try instead of (or on top of) instruction rewrites. They cost no proposer call.

From a parent policy:
- no demos → retrieve the ``demo_k`` nearest training items per input (BM25), and, when the label set is small
  enough for one example per label to fit, a fixed stratified set;
- retrieved demos → twice as many (up to ``max_k``) or half as many;
- a fixed set → retrieval instead;
- for a config with a control of more than ``narrow_min`` labels: narrow each input's label set to the
  ``narrow_k`` most likely labels (at most half the control's labels; ``serving.narrowing``), on top of retrieval;
  a narrowed parent tries twice and half as many candidates, or no narrowing. Narrowing comes first: with a small
  labeller, a short list of candidates is the change most likely to help, and the gate judges it like any other.

The demo pool is the training split only: validation and test items never appear as demos, and retrieval already
skips an input's own text, so a training item is never its own example.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from optimizer.labelstudio.labelconfig import Schema
from optimizer.learning.gold import GoldItem
from optimizer.learning.splits import stratified_order
from optimizer.learning.verifiers import label_set
from optimizer.serving.modes import RankerKind
from optimizer.serving.policy import Demo, Policy

FIXED_MAX_LABELS = 16


def demo_pool(items: Sequence[GoldItem]) -> tuple[Demo, ...]:
    return tuple(Demo(item.input, dict(item.answer)) for item in items)


def fixed_set(schema: Schema, train: Sequence[GoldItem], seed: int) -> tuple[Demo, ...]:
    """One training example per label of every control (rarest label first, seeded within a label)."""
    picked: dict[tuple[str, str], GoldItem] = {}
    for item in stratified_order(train, seed):
        for control in schema.choices:
            for label in label_set(item.answer.get(control.name)):
                picked.setdefault((control.name, label), item)
    chosen = list({item.id: item for item in picked.values()}.values())
    random.Random(f"fixed:{seed}").shuffle(chosen)
    return demo_pool(chosen)


def narrow_variants(
    parent: Policy, retrieved: Policy, schema: Schema, narrow_k: int, narrow_min: int, ranker: RankerKind | None = None
) -> list:
    """Narrowing changes of ``parent`` for a config with a control of more than ``narrow_min`` labels.

    ``ranker``: the pool's better learned ranker (``modes.fit``), which then ranks the candidates of a newly
    narrowed policy; a parent that already narrows keeps its own ranking."""
    widest = max((len(c.labels) for c in schema.choices), default=0)
    if widest <= narrow_min or narrow_k <= 0:
        return []
    if not parent.narrow_k:
        base = parent if parent.demos and parent.demo_k > 0 else retrieved
        # At most half the labels: narrowing 7 emotions to 8 candidates would narrow nothing.
        k = max(2, min(narrow_k, widest // 2))
        by = f" by {ranker}" if ranker is not None else ""
        return [(f"narrow:k={k}{by}", replace(base, narrow_k=k, ranker=ranker, meta={}))]
    out = []
    bigger, smaller = parent.narrow_k * 2, parent.narrow_k // 2
    if bigger < widest:
        out.append((f"narrow:k={bigger}", replace(parent, narrow_k=bigger, meta={})))
    if smaller >= 2:
        out.append((f"narrow:k={smaller}", replace(parent, narrow_k=smaller, meta={})))
    out.append(("narrow:off", replace(parent, narrow_k=0, meta={})))
    return out


def demo_variants(
    parent: Policy,
    schema: Schema,
    train: Sequence[GoldItem],
    *,
    demo_k: int,
    max_k: int,
    seed: int,
    narrow_k: int = 0,
    narrow_min: int = 16,
    ranker: RankerKind | None = None,
) -> list[tuple[str, Policy]]:
    """(kind, policy) demo and narrowing changes of ``parent``, most promising first."""
    if not train:
        return []
    pool = demo_pool(train)
    retrieved = replace(parent, demos=pool, demo_k=min(demo_k, len(pool)), meta={})
    return narrow_variants(parent, retrieved, schema, narrow_k, narrow_min, ranker) + _demo_changes(
        parent, retrieved, schema, train, max_k, seed
    )


def _demo_changes(parent: Policy, retrieved: Policy, schema: Schema, train, max_k: int, seed: int) -> list:
    if not parent.demos:
        out = [(f"demos:retrieve k={retrieved.demo_k}", retrieved)]
        small = sum(len(c.labels) for c in schema.choices) <= FIXED_MAX_LABELS
        if small:
            demos = fixed_set(schema, train, seed)
            out.append((f"demos:fixed n={len(demos)}", replace(parent, demos=demos, demo_k=0, meta={})))
        return out
    if parent.demo_k == 0:
        return [(f"demos:retrieve k={retrieved.demo_k}", retrieved)]
    out = []
    bigger, smaller = min(max_k, parent.demo_k * 2, len(parent.demos)), parent.demo_k // 2
    if bigger > parent.demo_k:
        out.append((f"demos:retrieve k={bigger}", replace(parent, demo_k=bigger, meta={})))
    if smaller >= 1:
        out.append((f"demos:retrieve k={smaller}", replace(parent, demo_k=smaller, meta={})))
    return out
