import pytest

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.labelstudio.render import MissingInput, html_to_text, render_input
from testkit.constants import REWARD_CONFIG, SUPPORT_CONFIG


def test_paragraphs_become_author_turns():
    schema = parse_label_config(SUPPORT_CONFIG)
    data = {"dialogue": [{"author": "Customer", "text": "Hi {name}!"}, {"author": "Bot", "text": " Hello. "}]}
    assert render_input(schema, data) == "Customer: Hi {name}!\nBot: Hello."


def test_paragraphs_honour_name_and_text_keys():
    schema = parse_label_config(
        '<View><Paragraphs name="p" value="$d" nameKey="who" textKey="said"/>'
        '<Choices name="c" toName="p"><Choice value="a"/></Choices></View>'
    )
    assert render_input(schema, {"d": [{"who": "A", "said": "x"}]}) == "A: x"


def test_several_objects_are_labelled_by_name():
    schema = parse_label_config(REWARD_CONFIG)
    assert render_input(schema, {"prompt": "2+2?", "response": "4"}) == "[input]\n2+2?\n\n[output]\n4"


def test_hypertext_drops_markup_scripts_and_keeps_paragraphs():
    text = html_to_text("<html><head><title>t</title><script>x()</script></head><p>One &amp; <b>two</b></p><p>3</p>")
    assert text == "One & two\n3"


def test_missing_field_is_reported():
    schema = parse_label_config(SUPPORT_CONFIG)
    with pytest.raises(MissingInput, match="dialogue"):
        render_input(schema, {"text": "hello"})
