"""Every reference a request or a command names is parsed by ``web.refs``, by the same rule everywhere."""

from __future__ import annotations


def test_the_protocol_layer_and_web_refs_name_projects_by_one_rule():
    """The protocol layer imports nothing of ours, so it keeps its own copy of the rule; they must stay equal."""
    from ls_protocol.requests import PROJECT_PATTERN as PROTOCOL
    from web.refs import PROJECT_PATTERN, ProjectRef, RefError

    assert PROTOCOL == PROJECT_PATTERN
    assert ProjectRef.parse("12.1700000000").number == 12
    for bad in ("12:1", "", "x" * 129, 12):
        try:
            ProjectRef.parse(bad)
        except RefError as exc:
            assert exc.field == "project"
        else:
            raise AssertionError(f"{bad!r} was accepted")
