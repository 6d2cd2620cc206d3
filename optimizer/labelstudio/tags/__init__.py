"""Label Studio control tags beyond ``Choices`` and ``TextArea``: everything one tag means, in one module each.

A tag module owns its control's whole contract, so no other module grows an if-chain per tag:

- what the label config says (the label set, the bounds, the tree), read once into a frozen dataclass;
- the JSON schema of the model's answer for constrained decoding, and the line of the format spec that asks for it;
- :meth:`TagControl.coerce`, which turns whatever the model wrote into a value inside the tag's domain or nothing
  (never a label outside the set, never a number outside the bounds);
- the Label Studio result items a value becomes, and the value an annotation's result items hold (gold).

Families: :mod:`.spans` (``Labels`` on ``Text``: named-entity spans), :mod:`.scales` (``Number``, ``Rating``),
:mod:`.taxonomy` (``Taxonomy``) and :mod:`.pairwise` (``Pairwise``). :data:`PARSERS` maps a tag name to the function
that builds its control from the config, and :func:`parse_tag` is what ``labelconfig`` calls.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping

from optimizer.labelstudio.tags.base import ObjectRef, TagControl, TagError
from optimizer.labelstudio.tags.pairwise import PairwiseControl
from optimizer.labelstudio.tags.scales import NumberControl, RatingControl
from optimizer.labelstudio.tags.spans import SpanControl
from optimizer.labelstudio.tags.taxonomy import TaxonomyControl

PARSERS: dict[str, Callable[[ET.Element, Mapping[str, ObjectRef]], TagControl]] = {
    "Labels": SpanControl.from_element,
    "Number": NumberControl.from_element,
    "Rating": RatingControl.from_element,
    "Taxonomy": TaxonomyControl.from_element,
    "Pairwise": PairwiseControl.from_element,
}


def parse_tag(element: ET.Element, objects: Mapping[str, ObjectRef]) -> TagControl:
    """The control for one config element; ``objects`` maps the config's object names to what they read."""
    return PARSERS[element.tag](element, objects)


__all__ = [
    "PARSERS",
    "NumberControl",
    "ObjectRef",
    "PairwiseControl",
    "RatingControl",
    "SpanControl",
    "TagControl",
    "TagError",
    "TaxonomyControl",
    "parse_tag",
]
