"""A prompt policy: the instruction plus few-shot demos, identified by a hash of its content.

The version id is derived from the content, so it is immutable by construction: two workers that build the same
policy get the same id, a cache keyed by version can never serve stale text, and "the model version changes exactly
when the policy changes" holds without any bookkeeping.

Demos come in two modes:
- ``demo_k == 0``: every demo is shown, in order (a fixed few-shot set);
- ``demo_k > 0``: the ``demo_k`` demos nearest to each input are retrieved from the pool (see ``retrieval``).

``narrow_k > 0`` restricts each input's answer to the ``narrow_k`` most likely labels of every many-label control,
ranked from the demo pool and the label names (see ``narrowing``). It is part of the content, so it changes the
version; it is left out of the hashed content when 0, so the versions of policies made before it existed stay the
same.

Learned answers (``serving.ranking``, ``serving.modes``), each hashed only when it differs from its default, so
every version made before them keeps its id:
- ``ranker``: the model trained on the demo pool that ranks each Choices control's labels (TF-IDF + logistic
  regression, or the nearest-neighbour vote). It narrows instead of the original ranking (neighbours plus label
  names, ``ranker`` None), and it answers in the two modes below;
- ``mode``: ``llm`` (the default), ``ranker`` (the ranker answers, no LLM call) or ``cascade`` (the ranker answers
  when its calibrated confidence is at least ``tau``; otherwise the LLM does, choosing among the ranker's top
  ``narrow_k`` labels);
- ``hide_demos``: the pool trains the ranker and narrows, but the LLM is shown no demos (a tiny labeller chooses
  among candidates better without them: bench/README.md, issue 13).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from optimizer.labelstudio.results import Answer
from optimizer.serving.modes import Mode, RankerKind

DEFAULT_INSTRUCTION = (
    "You are a careful annotator. Read the input and choose the labels that describe it. "
    "Use only the allowed labels, exactly as written."
)


@dataclass(frozen=True)
class Demo:
    """One worked example: an input and the answer a human gave, per control name."""

    input: str
    output: Answer

    def to_dict(self) -> dict:
        return {"input": self.input, "output": self.output}

    @classmethod
    def from_dict(cls, data: dict) -> Demo:
        # JSON values stay as they are (a rating stays 4, spans stay objects); anything else becomes text.
        output = {
            str(k): (list(v) if isinstance(v, list | tuple) else v if isinstance(v, int | float | dict) else str(v))
            for k, v in data["output"].items()
        }
        return cls(input=str(data["input"]), output=output)


@dataclass(frozen=True)
class Policy:
    instruction: str
    demos: tuple[Demo, ...] = ()
    demo_k: int = 0
    # Free-form provenance (parent version, scores, job id). Not part of the identity.
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    narrow_k: int = 0
    mode: Mode = Mode.LLM
    ranker: RankerKind | None = None
    tau: float = 0.0
    hide_demos: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.ranker is not None:
            object.__setattr__(self, "ranker", RankerKind(self.ranker))
        object.__setattr__(self, "tau", round(float(self.tau), 4))
        if self.mode is not Mode.LLM and self.ranker is None:
            raise ValueError(f"a {self.mode.value} policy needs a ranker")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError("tau must be a probability in [0, 1]")

    def content(self) -> dict:
        return {
            "instruction": self.instruction,
            "demos": [d.to_dict() for d in self.demos],
            "demo_k": self.demo_k,
            **self.answering(),
        }

    def answering(self) -> dict:
        """How the policy answers beyond instruction and demos: each field only when it is not its default (and,
        for ``ranker`` and ``tau``, only when something uses it), so older versions hash as they always did."""
        out: dict = {}
        if self.narrow_k:
            out["narrow_k"] = self.narrow_k
        if self.mode is not Mode.LLM:
            out["mode"] = self.mode.value
        if self.ranker is not None and (self.mode is not Mode.LLM or self.narrow_k):
            out["ranker"] = self.ranker.value
        if self.mode is Mode.CASCADE:
            out["tau"] = self.tau
        if self.hide_demos:
            out["hide_demos"] = True
        return out

    @property
    def shown_demos(self) -> bool:
        """Whether the LLM sees demos at all (the pool may exist only to train the ranker)."""
        return bool(self.demos) and not self.hide_demos

    @property
    def version(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return "pv-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {**self.content(), "version": self.version, "meta": self.meta}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Policy:
        return cls(
            instruction=str(data["instruction"]),
            demos=tuple(Demo.from_dict(d) for d in data.get("demos") or ()),
            demo_k=int(data.get("demo_k") or 0),
            narrow_k=int(data.get("narrow_k") or 0),
            mode=Mode(data.get("mode") or Mode.LLM),
            ranker=RankerKind(data["ranker"]) if data.get("ranker") else None,
            tau=float(data.get("tau") or 0.0),
            hide_demos=bool(data.get("hide_demos")),
            meta=dict(data.get("meta") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> Policy:
        return cls.from_dict(json.loads(text))

    def with_instruction(self, instruction: str) -> Policy:
        return replace(self, instruction=instruction, meta={})

    def with_meta(self, **meta) -> Policy:
        return replace(self, meta={**self.meta, **meta})


def load_prompt(value: str | None) -> str:
    """``DEFAULT_PROMPT`` semantics: ``@path`` or an existing file path reads the file, other text is the prompt."""
    if not value or not value.strip():
        return DEFAULT_INSTRUCTION
    candidate = value[1:] if value.startswith("@") else value
    if value.startswith("@") or (len(candidate) < 4096 and "\n" not in candidate and Path(candidate).is_file()):
        return Path(candidate).read_text(encoding="utf-8").strip()
    return value.strip()
