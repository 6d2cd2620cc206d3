"""Built rankers, per worker process: rebuilt from the policy's pool on first use, kept in a bounded LRU.

A ranker is a deterministic function of (kind, control, the pool's examples for that control, the config's judge
shape), so that tuple is its key and a cached ranker is never stale: a promoted policy with another pool gets its
own. Nothing is pickled into Redis; every process rebuilds what it serves (about a second for a hundred items).

At most :data:`RANKERS_PER_PROCESS` are kept (coefficients are labels × features; a 77-label ranker over 300 items
holds a few MB). Two threads asking for the same missing ranker build it once: the second waits for the first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

from optimizer.labelstudio.judge import judge_shape, pair_parts
from optimizer.labelstudio.labelconfig import ChoiceControl, Schema
from optimizer.serving.modes import RankerKind
from optimizer.serving.policy import Demo

RANKERS_PER_PROCESS = 8

Examples = tuple[tuple[str, tuple[str, ...]], ...]

_built: OrderedDict[tuple, object] = OrderedDict()
_building: dict[tuple, threading.Lock] = {}
_lock = threading.Lock()


def examples_for(control: ChoiceControl, pool: Sequence[Demo]) -> Examples:
    """The pool's (input, labels) pairs for one control: demos that answer it, labels inside its set."""
    allowed = set(control.labels)
    out = []
    for demo in pool:
        value = demo.output.get(control.name)
        labels = [value] if isinstance(value, str) else list(value or ())
        kept = tuple(dict.fromkeys(label for label in labels if label in allowed))
        if kept:
            out.append((demo.input, kept))
    return tuple(out)


def ranker_for(kind: RankerKind, schema: Schema, control: ChoiceControl, pool: Sequence[Demo]):
    """The built :class:`~optimizer.serving.ranking.ranker.ControlRanker` for this pool (built now if missing)."""
    shape = judge_shape(schema)
    examples = examples_for(control, pool)
    # The judge's layout (object names, which one is the prompt) decides how an input splits into its pair.
    layout = (tuple(o.name for o in schema.objects), shape.prompt.name) if shape is not None else None
    key = (kind, control, examples, layout)
    with _lock:
        if key in _built:
            _built.move_to_end(key)
            return _built[key]
        gate = _building.setdefault(key, threading.Lock())
    with gate:
        with _lock:
            if key in _built:
                return _built[key]
        from optimizer.serving.ranking.ranker import build

        # A judge's grades are imbalanced and scored by balanced accuracy; its input is a (prompt, response) pair.
        options = {"balanced": True, "pair": partial(pair_parts, schema, shape)} if shape is not None else {}
        ranker = build(kind, control, examples, **options)
        with _lock:
            _built[key] = ranker
            _building.pop(key, None)
            while len(_built) > RANKERS_PER_PROCESS:
                _built.popitem(last=False)
        return ranker


def clear() -> None:
    """Forget every built ranker (tests)."""
    with _lock:
        _built.clear()


def size() -> int:
    return len(_built)
