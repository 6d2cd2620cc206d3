import json

from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.serving.policy import Demo, Policy
from optimizer.serving.prompting import build_messages, json_schema
from testkit.constants import REWARD_CONFIG, THREE_CONTROLS_CONFIG

THREE = parse_label_config(THREE_CONTROLS_CONFIG)


def test_user_text_with_braces_is_not_formatted():
    policy = Policy("Instruction {with} {0} braces %s")
    messages = build_messages(policy, THREE, "input {text} {0} %d")
    assert messages[0]["content"].startswith("Instruction {with} {0} braces %s")
    assert messages[-1] == {"role": "user", "content": "input {text} {0} %d"}


def test_schema_constrains_each_control_to_its_labels():
    schema = json_schema(THREE)
    assert schema["properties"]["topics"]["items"]["enum"] == ["billing", "shipping", "returns"]
    assert schema["properties"]["topics"]["minItems"] == 1
    assert schema["properties"]["sentiment"]["enum"] == ["positive", "neutral", "negative"]
    assert set(schema["required"]) == {"topics", "sentiment", "urgency"}


def test_format_spec_lists_labels_and_display_text():
    system = build_messages(Policy("x"), parse_label_config(REWARD_CONFIG), "y")[0]["content"]
    assert '"reward": exactly one of "1" (Good), "0" (Bad)' in system


def test_fixed_demos_are_all_shown_as_turns_with_exact_json():
    demos = (Demo("late parcel", {"topics": ["shipping"], "sentiment": "negative", "urgency": ["high"]}),)
    messages = build_messages(Policy("x", demos), THREE, "new")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(messages[2]["content"]) == {"topics": ["shipping"], "sentiment": "negative", "urgency": "high"}


def test_retrieved_demos_are_the_nearest_and_never_the_input_itself():
    demos = tuple(
        Demo(text, {"sentiment": label})
        for text, label in [
            ("refund for my broken blender", "negative"),
            ("great fast shipping thanks", "positive"),
            ("where is my parcel tracking", "neutral"),
            ("the blender arrived broken, refund please", "negative"),
        ]
    )
    policy = Policy("x", demos, demo_k=1)
    messages = build_messages(policy, THREE, "my blender is broken, I want a refund")
    assert messages[1]["content"] in {demos[0].input, demos[3].input}
    own = build_messages(policy, THREE, demos[1].input)
    assert own[1]["content"] != demos[1].input
