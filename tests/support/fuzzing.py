"""Hypothesis strategies for hostile HTTP requests, grown from the Label Studio payloads recorded in shared/.

Every case starts from a real payload (``testkit/data/ls-protocol``, copied from ``shared/ls-protocol``) or a real
policy-API body and mutates it at any depth: a key dropped, a value retyped, a subtree nested thousands deep, a
huge string, a lone surrogate, ``NaN``, a broken label config, a context whose result items have every wrong type.
Some bodies are then damaged as bytes (non-UTF-8, truncated). Path and query parameters get the same treatment.

A :class:`Case` is one request; :func:`cases` draws them for every route of the OpenAPI document, so a route that
is described is fuzzed without further work here.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import quote

from hypothesis import strategies as st

from testkit.constants import SUPPORT_CONFIG
from testkit.lspayloads import SAMPLES

WEBHOOK_ACTIONS = (
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "PROJECT_UPDATED",
    "START_TRAINING",
)
SEEDS = {
    "/predict": ("predict.retrieve_predictions.json", "predict.interactive_annotating.json"),
    "/setup": ("setup.json",),
    "/webhook": tuple(f"webhook.{action}.json" for action in WEBHOOK_ACTIONS),
    "/train": ("train.legacy.json",),
}

BROKEN_CONFIGS = (
    "",
    "<View>",
    "<View></View>",
    "not xml at all",
    '<View><Text name="t" value="$text"/></View>',
    '<View><Choices name="c" toName="missing"><Choice value="A"/></Choices></View>',
    '<View><Text name="t" value="$text"/><Choices name="c" toName="t"></Choices></View>',
    '<View><Text name="t" value="$text"/><Choices name="c" toName="t" choice="weird"><Choice/></Choices></View>',
    '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    '<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="&d;"/></Choices></View>',
    '<!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]><View><Text name="t" value="&x;"/></View>',
    "<View>" + "<View>" * 2000 + "</View>" * 2000 + "</View>",
    SUPPORT_CONFIG.replace("</View>", ""),
    SUPPORT_CONFIG.replace('value="$dialogue"', 'value="$"'),
    SUPPORT_CONFIG.replace('name="intent"', 'name=""'),
)

# Leaves that have broken real services: wrong types, edge numbers, hostile strings.
SURROGATE = "\ud800"


def _nest(depth: int, kind: str) -> object:
    """A value nested ``depth`` levels deep. Deep ones stay a placeholder until :func:`encode` writes them as text,
    so neither the mutations nor ``json.dumps`` recurse through thousands of levels here."""
    if depth > 50:
        return f"@@deep-{depth}-{kind}@@"
    value: object = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def _expand_deep(text: str) -> str:
    def deep(match: re.Match) -> str:
        depth, kind = int(match.group(1)), match.group(2)
        return ("[" * depth + "1" + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)

    return re.sub(r'"@@deep-(\d+)-(list|dict)@@"', deep, text)


def huge_strings() -> st.SearchStrategy[str]:
    return st.builds(lambda n, c: c * n, st.integers(10_000, 300_000), st.sampled_from(["a", "é", "😀", "<", "\\"]))


def hostile_leaves() -> st.SearchStrategy[object]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0, -1, 2**63, 1e308, -0.0, "", " ", "0", "null", "true", "[]", "{}"]),
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec=None, categories=["Cs", "Co", "Cc", "Zl"]), min_size=1, max_size=8),
        st.just(SURROGATE),
        huge_strings(),
        st.sampled_from(BROKEN_CONFIGS),
        st.tuples(st.integers(65, 3000), st.sampled_from(["list", "dict"])).map(lambda t: _nest(*t)),
        st.lists(st.integers() | st.text(max_size=5) | st.none(), max_size=4),
        st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=5) | st.none(), max_size=4),
    )


def result_items() -> st.SearchStrategy[object]:
    """Context result items with every wrong type, at every key (what annotators' browsers could send)."""
    value = st.one_of(
        hostile_leaves(),
        st.fixed_dictionaries({}, optional={"text": hostile_leaves(), "choices": hostile_leaves()}),
    )
    item = st.fixed_dictionaries(
        {},
        optional={
            "from_name": st.sampled_from(["prompt", "intent", "response"]) | hostile_leaves(),
            "to_name": st.just("chat") | hostile_leaves(),
            "type": st.sampled_from(["textarea", "choices"]) | hostile_leaves(),
            "value": value,
        },
    )
    return st.one_of(hostile_leaves(), st.lists(item | hostile_leaves(), max_size=4))


@cache
def recorded(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())["request_json"]


def _paths(value, prefix: tuple = (), limit: int = 24) -> list[tuple]:
    """Every node's path in a JSON value (the root is ``()``), down to ``limit`` levels (deeper is nesting alone)."""
    found = [prefix]
    if len(prefix) >= limit:
        return found
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _get(value, path: tuple):
    for part in path:
        value = value[part]
    return value


MUTATIONS = ("drop", "retype", "nest", "add", "duplicate")


@st.composite
def mutated(draw, seed: dict, rounds: int = 3) -> object:
    """``seed`` with 1..``rounds`` mutations, each at a node chosen anywhere in the tree."""
    value = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, rounds))):
        path = draw(st.sampled_from(_paths(value)))
        op = draw(st.sampled_from(MUTATIONS))
        if not path:
            if op in ("retype", "nest"):
                value = draw(hostile_leaves()) if op == "retype" else [value]
            continue
        parent, key = _get(value, path[:-1]), path[-1]
        if op == "drop":
            del parent[key]
        elif op == "retype":
            parent[key] = draw(hostile_leaves())
        elif op == "nest":
            parent[key] = _nest(draw(st.integers(1, 200)), draw(st.sampled_from(["list", "dict"])))
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8) | st.just(SURROGATE))] = draw(hostile_leaves())
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    return value


def predict_contexts() -> st.SearchStrategy[dict]:
    """The interactive payload with ``params.context.result`` replaced by items of every wrong type."""

    def build(result, config):
        payload = copy.deepcopy(recorded("predict.interactive_annotating.json"))
        payload["params"]["context"] = {"result": result}
        if config is not None:
            payload["label_config"] = config
        return payload

    return st.builds(build, result_items(), st.none() | st.sampled_from(BROKEN_CONFIGS))


def encode(value, draw) -> bytes:
    """JSON text as Label Studio would send it, or damaged: NaN tokens, raw surrogates, bytes cut or flipped."""
    text = _expand_deep(json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans())))
    raw = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 6 + ["truncate", "flip", "prefix", "empty"]))
    if damage == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.sampled_from([0xFF, 0xC0, 0x80, 0x00, 0xED]))]) + raw[at + 1 :]
    elif damage == "prefix":
        raw = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"  "])) + raw
    elif damage == "empty":
        raw = b""
    return raw


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes | None = None
    query: dict = field(default_factory=dict)
    html: bool = False  # a dashboard page: errors are HTML pages for people, not JSON

    def __repr__(self) -> str:  # hypothesis prints failing cases; keep them readable
        shown = self.body if self.body is None or len(self.body) < 400 else self.body[:400] + b"..."
        return f"Case({self.method} {self.path} query={self.query} body={shown!r})"


@dataclass(frozen=True)
class Known:
    """Real values of the running backend (a registered project and its versions), so mutations reach deep code."""

    project_id: str
    project_uid: str
    versions: tuple[str, ...]
    job: str = "no-such-job"


def path_values(kind: str, known: Known) -> st.SearchStrategy[str]:
    real = {
        "ref": [known.project_id, known.project_uid, "99999"],
        "version": [*known.versions, "pv-000000000000"],
        "job_id": [known.job],
        "filename": ["dashboard.css", "live.js", "favicon.svg"],
    }[kind]
    junk = st.one_of(
        st.text(min_size=1, max_size=30),
        st.sampled_from(["..", ".", "%00", "a" * 200, "pv-" + "f" * 300, SURROGATE + "x", "1:2", "-1", "0x10"]),
    )
    return st.sampled_from(real) | junk


def _quote(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def policy_bodies(path: str, known: Known) -> st.SearchStrategy[dict]:
    version = st.sampled_from(known.versions)
    if path.endswith("/rollback"):
        seed = st.fixed_dictionaries({"version": version}, optional={"expected": version, "pin": st.booleans()})
    elif path.endswith("/pin"):
        seed = st.fixed_dictionaries({}, optional={"version": version})
    else:
        seed = st.just({})
    return seed.flatmap(lambda s: st.just(s) | mutated(s, rounds=2))


@st.composite
def case_for(draw, path: str, method: str, operation: dict, known: Known) -> Case:
    concrete = path
    for name in re.findall(r"{(\w+)}", path):
        concrete = concrete.replace("{" + name + "}", _quote(draw(path_values(name, known))), 1)
    query = {}
    for param in operation.get("parameters", []):
        if param["in"] == "query" and draw(st.booleans()):
            value = draw(st.sampled_from([*known.versions, "5", "0", "1001"]) | st.text(max_size=20))
            query[param["name"]] = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    html = "text/html" in next(iter(operation["responses"].values())).get("content", {})
    if "requestBody" not in operation:
        return Case(method.upper(), concrete, None, query, html)
    if path in SEEDS:
        payloads = st.sampled_from(SEEDS[path]).flatmap(lambda name: mutated(recorded(name)))
        if path == "/predict":
            payloads = payloads | predict_contexts()
    else:
        payloads = policy_bodies(path, known)
    body = encode(draw(payloads), draw)
    return Case(method.upper(), concrete, body, query, html)


def cases(document: dict, known: Known) -> st.SearchStrategy[Case]:
    """One request to any operation of the OpenAPI ``document``; routes with bodies are drawn more often."""
    options = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            weight = 6 if "requestBody" in operation else 1
            options += [case_for(path, method, operation, known)] * weight
    return st.one_of(options)


def names_the_field(answer: dict) -> bool:
    """A 4xx answer names the field to fix, and its message mentions it (the whole path or its last name)."""
    where, message = answer.get("field"), answer.get("error")
    if not (isinstance(where, str) and where and isinstance(message, str)):
        return False
    leaf = re.split(r"[.\[]", re.sub(r"(\[\d+\])+$", "", where))[-1].strip('"]')
    return where.lower() in message.lower() or (bool(leaf) and leaf.lower() in message.lower())
