import pytest

from optimizer.labelstudio.labelconfig import LabelConfigError, parse_label_config
from testkit.constants import REWARD_CONFIG, SUPPORT_CONFIG, THREE_CONTROLS_CONFIG


def test_support_config_has_dialogue_prompt_answer_and_ten_intents():
    schema = parse_label_config(SUPPORT_CONFIG)
    assert [(o.name, o.tag, o.key) for o in schema.objects] == [("chat", "Paragraphs", "dialogue")]
    assert schema.prompt_area is not None and schema.prompt_area.name == "prompt"
    assert [a.name for a in schema.answers] == ["response"]
    (intent,) = schema.choices
    assert intent.multiple and intent.to_name == "chat" and len(intent.labels) == 10
    assert schema.outputs == ("intent", "response")


def test_reward_template_keeps_values_and_display_text():
    schema = parse_label_config(REWARD_CONFIG)
    assert [o.key for o in schema.objects] == ["prompt", "response"]
    (reward,) = schema.choices
    assert reward.labels == ("1", "0") and not reward.multiple and reward.to_name == "output"
    assert reward.display_of("1") == "Good" and reward.display_of("0") == "Bad"


def test_one_multiple_and_two_single_choices_on_one_text():
    schema = parse_label_config(THREE_CONTROLS_CONFIG)
    kinds = {c.name: c.multiple for c in schema.choices}
    assert kinds == {"topics": True, "sentiment": False, "urgency": False}
    assert all(c.to_name == "text" for c in schema.choices)


def test_hypertext_and_several_objects():
    schema = parse_label_config(
        '<View><HyperText name="page" value="$html"/><Text name="title" value="$title"/>'
        '<Choices name="c" toName="page"><Choice value="a"/></Choices></View>'
    )
    assert [(o.tag, o.key) for o in schema.objects] == [("HyperText", "html"), ("Text", "title")]


@pytest.mark.parametrize(
    "config, message",
    [
        ("", "empty"),
        ("<View><Choices", "not valid XML"),
        ("not xml at all", "not valid XML"),
        ('<View><Choices name="c" toName="t"><Choice value="a"/></Choices></View>', "no Text"),
        ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"></Choices></View>', "no Choice values"),
        (
            '<View><Text name="t" value="$t"/><Choices name="c" toName="x"><Choice value="a"/></Choices></View>',
            "unknown",
        ),
        ('<View><Text name="t" value="$t"/></View>', "no control for the model to fill"),
        ('<View><Text name="t" value="plain"/><Choices name="c" toName="t"><Choice value="a"/></Choices></View>', "$"),
    ],
)
def test_broken_configs_raise_a_readable_error(config, message):
    with pytest.raises(LabelConfigError) as info:
        parse_label_config(config)
    assert message in str(info.value)


def test_schema_is_cached_by_content():
    assert parse_label_config(SUPPORT_CONFIG) is parse_label_config(SUPPORT_CONFIG)
    assert parse_label_config(SUPPORT_CONFIG).digest != parse_label_config(REWARD_CONFIG).digest
