"""Hypothesis strategies for hostile HTTP requests, grown from the Label Studio payloads recorded in shared/.

Every case starts from a real payload (``testkit/data/ls-protocol``, copied from ``shared/ls-protocol``) or a real
policy-API body and mutates it at any depth: a key dropped, a value retyped, a subtree nested thousands deep, a
huge string, a lone surrogate, ``NaN``, a broken label config, a context whose result items have every wrong type.
Some bodies are then damaged as bytes (non-UTF-8, truncated). Path and query parameters get the same treatment.

A :class:`Case` is one request; :func:`cases` draws them for every route of the OpenAPI document, so a route that
is described is fuzzed without further work here. Routes with a body are drawn :data:`BODY_WEIGHT` times as often
as routes without (a weighted draw over the operations: ``one_of`` would drop repeated strategies).

What reaches route code, and not only the first check:
- every field of every request body in the OpenAPI document is present in some seed (:func:`body_seeds`;
  ``test_every_openapi_body_field_is_seeded`` fails when a new field is not), with real values: the backend's
  project, its policy versions, Label Studio task ids, real Extra params;
- the dashboard's form POSTs are form-encoded and carry the page's valid CSRF token (sometimes none, or a wrong one);
- path parameters take the real project, versions and job ids (:class:`Known`) as well as junk;
- headers vary (:func:`header_sets`): missing, wrong and malformed auth, a same-site or cross-site ``Origin``,
  every ``Content-Type``, a right or wrong ``X-Webhook-Secret``. Each case records what its headers should cause
  (:meth:`Case.expected_refusal`), so the test checks the refusal and not only the absence of a 500.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

from testkit.constants import SUPPORT_CONFIG
from tests.support.fuzz_seeds import Known, basic, body_seeds, form_seeds, recorded, request_schema

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
    """One request, and what its headers alone should make of it."""

    method: str
    path: str
    body: bytes | None = None
    query: dict = field(default_factory=dict)
    html: bool = False  # a dashboard page: errors are HTML pages for people, not JSON
    headers: tuple[tuple[str, str], ...] = ()
    auth_ok: bool = True  # the Authorization header holds the right credentials
    secret_ok: bool = False  # X-Webhook-Secret holds the right secret
    cross_site: bool = False  # Origin / Sec-Fetch-Site say another site sent it
    csrf_ok: bool = False  # a form-encoded dashboard POST carrying the valid token
    route: str = ""  # the OpenAPI path and method this case was drawn for

    def expected_refusal(self) -> int | None:
        """The status the headers alone must cause, before any route code runs, or None."""
        if self.path == "/health":
            return None
        if not self.auth_ok and not (self.path == "/webhook" and self.secret_ok):
            return 401
        if self.method == "POST" and self.cross_site:
            return 403
        return None

    def __repr__(self) -> str:  # hypothesis prints failing cases; keep them readable
        shown = self.body if self.body is None or len(self.body) < 400 else self.body[:400] + b"..."
        headers = {k: (v if k != "Authorization" else v[:16] + "...") for k, v in self.headers}
        return f"Case({self.method} {self.path} query={self.query} headers={headers} body={shown!r})"


def path_values(kind: str, known: Known) -> st.SearchStrategy[str]:
    real = {
        "ref": [known.project_id, known.project_uid, "99999"],
        "version": [*known.versions, "pv-000000000000"],
        "job_id": [*known.jobs, "no-such-job"],
        "filename": ["dashboard.css", "live.js", "favicon.svg"],
    }[kind]
    junk = st.one_of(
        st.text(min_size=1, max_size=30),
        st.sampled_from(["..", ".", "%00", "a" * 200, "pv-" + "f" * 300, SURROGATE + "x", "1:2", "-1", "0x10"]),
    )
    return st.sampled_from(real) | junk


def _quote(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def json_bodies(path: str, known: Known) -> st.SearchStrategy[object]:
    seeds = body_seeds(path, known) or [{}]
    payloads = st.sampled_from(seeds).flatmap(lambda seed: st.just(seed) | mutated(seed, rounds=3))
    if path == "/predict":
        payloads = payloads | predict_contexts()
    return payloads


@st.composite
def form_body(draw, known: Known) -> tuple[bytes, bool]:
    """A dashboard form, URL-encoded: the page's own (valid token), or mutated; (body, carries the valid token)."""
    fields = dict(draw(st.sampled_from(form_seeds(known))))
    token = draw(st.sampled_from(["valid"] * 6 + ["missing", "wrong", "other"]))
    if token == "missing":
        del fields["csrf_token"]
    elif token == "wrong":
        fields["csrf_token"] = "0" * 64
    elif token == "other":
        fields["csrf_token"] = draw(st.text(max_size=80) | st.sampled_from(["", known.csrf_token.upper()]))
    text_value = st.text(max_size=40) | st.sampled_from([*known.versions, "", "pv-" + "f" * 300]) | huge_strings()
    for name in ("version", "expected"):
        if draw(st.integers(0, 3)) == 0:
            fields[name] = draw(text_value)
    pairs = list(fields.items())
    if draw(st.integers(0, 5)) == 0:  # a field twice, or one the form never has
        pairs.append((draw(st.sampled_from(["version", "csrf_token", "x", ""])), draw(text_value)))
    raw = urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in pairs]).encode()
    damage = draw(st.sampled_from(["none"] * 8 + ["flip", "truncate"]))
    if damage == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + b"%" + raw[at + 1 :]
    elif damage == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    return raw, token == "valid" and damage == "none"


# --- headers ---------------------------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


@st.composite
def header_sets(draw, known: Known, body_type: str | None) -> tuple[dict, dict]:
    """Headers for one request, and what they mean (``auth_ok``, ``secret_ok``, ``cross_site``).

    Most requests carry valid credentials and come from a server (no ``Origin``, as Label Studio and scripts send)
    or from our own pages, so their bodies reach route code; about one in eight has bad credentials and one in ten
    comes from another site, and those must be refused by their headers alone."""
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["valid"] * 28 + ["missing", "wrong password", "wrong user", "malformed"]))
    if auth == "valid":
        headers["Authorization"] = known.authorization
    elif auth == "wrong password":
        headers["Authorization"] = basic(known.auth[0], known.auth[1] + "x")
    elif auth == "wrong user":
        headers["Authorization"] = basic("admin", known.auth[1])
    elif auth == "malformed":
        headers["Authorization"] = draw(
            st.sampled_from(["Basic", "Basic !!!", "Bearer abc", basic("nocolon", "")[:-4], "Token " + "t" * 40])
        )
    secret = draw(st.sampled_from(["absent"] * 4 + ["right", "wrong"]))
    if secret != "absent":
        headers["X-Webhook-Secret"] = known.webhook_secret if secret == "right" else known.webhook_secret + "-not"
    sender = draw(st.sampled_from(["server"] * 6 + ["our page"] * 3 + ["another site"]))
    if sender == "our page":
        origin = draw(st.sampled_from([known.origin, None]))
        site = draw(st.sampled_from(["same-origin", "none", None]))
    elif sender == "another site":
        other = st.sampled_from(["https://evil.example", "null", known.origin.rsplit(":", 1)[0] + ":1"])
        origin, site = draw(st.sampled_from([(other, None), (None, "cross"), (other, "cross")]))
        origin = draw(origin) if origin is not None else None
        site = draw(st.sampled_from(["cross-site", "same-site"])) if site else None
    else:
        origin, site = None, None
    if origin is not None:
        headers["Origin"] = origin
    if site is not None:
        headers["Sec-Fetch-Site"] = site
    if body_type is not None:
        others = ["absent", "text/plain", FORM, "application/json", "application/json; charset=utf-8",
                  "multipart/form-data; boundary=x"]  # fmt: skip
        kind = draw(st.sampled_from([body_type] * 10 + others))
        if kind != "absent":
            headers["Content-Type"] = kind
    meaning = {"auth_ok": auth == "valid", "secret_ok": secret == "right", "cross_site": sender == "another site"}
    return headers, meaning


# --- cases -----------------------------------------------------------------------------------------------------

BODY_WEIGHT = 6  # routes with a body are drawn this many times as often as routes without


def operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


# A route without a body has little to vary, so Hypothesis draws fewer distinct cases for it than its weight says
# (measured: about half): 2, not 1, keeps every one of the 40 operations drawn in 1,000 cases.
PLAIN_WEIGHT = 2


def weight(operation: dict) -> int:
    return BODY_WEIGHT if "requestBody" in operation else PLAIN_WEIGHT


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
    described = request_schema(operation)
    headers, meaning = draw(header_sets(known, described[0] if described else None))
    body, csrf_ok = None, False
    if described is not None and described[0] == FORM:
        body, token_ok = draw(form_body(known))
        csrf_ok = token_ok and headers.get("Content-Type") == FORM
    elif described is not None:
        body = encode(draw(json_bodies(path, known)), draw)
    return Case(method.upper(), concrete, body, query, html, tuple(headers.items()), csrf_ok=csrf_ok,
                route=f"{method.upper()} {path}", **meaning)  # fmt: skip


def cases(document: dict, known: Known) -> st.SearchStrategy[Case]:
    """One request to any operation of the OpenAPI ``document``, chosen with the weights of :func:`weight`.

    The operation is drawn by a ``random.Random`` that Hypothesis seeds (so a run's seed still reproduces it), not
    by ``sampled_from``: Hypothesis favours the first elements of a list, and with 40 operations the last few were
    drawn once or never in 1,000 cases."""
    ops = operations(document)
    weights = [weight(op) for _, _, op in ops]
    return st.randoms(use_true_random=True).flatmap(lambda rnd: case_for(*rnd.choices(ops, weights)[0], known))


def body_share(document: dict, weighted: bool = True) -> float:
    """The share of cases :func:`cases` should draw for routes with a body (``weighted=False``: if every operation
    had the same share, as the old ``one_of`` over repeated strategies gave)."""
    weights = [weight(op) if weighted else 1 for _, _, op in operations(document)]
    bodies = [w for w, (_, _, op) in zip(weights, operations(document), strict=True) if "requestBody" in op]
    return sum(bodies) / sum(weights)


def names_the_field(answer: dict) -> bool:
    """A 4xx answer names the field to fix, and its message mentions it (the whole path or its last name)."""
    where, message = answer.get("field"), answer.get("error")
    if not (isinstance(where, str) and where and isinstance(message, str)):
        return False
    leaf = re.split(r"[.\[]", re.sub(r"(\[\d+\])+$", "", where))[-1].strip('"]')
    return where.lower() in message.lower() or (bool(leaf) and leaf.lower() in message.lower())
