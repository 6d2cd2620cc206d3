from optimizer.labelstudio.labelconfig import parse_label_config
from optimizer.serving.parsing import parse_answer
from testkit.constants import REWARD_CONFIG, SUPPORT_CONFIG, THREE_CONTROLS_CONFIG

SUPPORT = parse_label_config(SUPPORT_CONFIG)
THREE = parse_label_config(THREE_CONTROLS_CONFIG)
REWARD = parse_label_config(REWARD_CONFIG)


def test_strict_json_keeps_only_labels_from_the_set():
    parsed = parse_answer(SUPPORT, '{"intent": ["Greeting", "NotALabel", "Billing"], "response": "Hi"}')
    assert parsed.strict
    assert parsed.choices["intent"] == ["Greeting", "Billing"]
    assert parsed.dropped == 1
    assert parsed.texts == {"response": "Hi"}


def test_case_insensitive_match_and_deduplication():
    parsed = parse_answer(SUPPORT, '{"intent": ["greeting", "GREETING", "Greeting.", "billing"]}')
    assert parsed.choices["intent"] == ["Greeting", "Billing"]


def test_no_fuzzy_matching():
    parsed = parse_answer(SUPPORT, '{"intent": ["Greetings", "Tech Support", "Billng"]}')
    assert parsed.choices["intent"] == []
    assert parsed.dropped == 3


def test_single_choice_gets_at_most_one_label():
    parsed = parse_answer(THREE, '{"topics": ["billing", "shipping"], "sentiment": ["negative", "positive"]}')
    assert parsed.choices["topics"] == ["billing", "shipping"]
    assert parsed.choices["sentiment"] == ["negative"]
    assert parsed.choices["urgency"] == []


def test_empty_answers_yield_no_choice():
    for raw in ("", "   ", "{}", '{"intent": []}', "null"):
        assert parse_answer(SUPPORT, raw).empty, raw


def test_display_text_maps_to_value():
    assert parse_answer(REWARD, '{"reward": "Good"}').choices["reward"] == ["1"]
    assert parse_answer(REWARD, '{"reward": "bad"}').choices["reward"] == ["0"]
    assert parse_answer(REWARD, '{"reward": 1}').choices["reward"] == ["1"]


def test_code_fences_and_surrounding_chatter():
    raw = 'Sure! Here it is:\n```json\n{"intent": ["Billing"]}\n```'
    assert parse_answer(SUPPORT, raw).choices["intent"] == ["Billing"]


def test_bare_list_for_a_single_choices_control():
    schema = parse_label_config(
        '<View><Text name="t" value="$t"/><Choices name="c" toName="t" choice="multiple">'
        '<Choice value="a"/><Choice value="b"/></Choices></View>'
    )
    assert parse_answer(schema, '["b", "z", "a"]').choices["c"] == ["b", "a"]


def test_plain_lines_fallback():
    parsed = parse_answer(THREE, "topics: Billing, returns, weather\nsentiment: negative\n- urgency: high")
    assert not parsed.strict
    assert parsed.choices == {"topics": ["billing", "returns"], "sentiment": ["negative"], "urgency": ["high"]}
    assert parsed.dropped == 1


def test_bare_label_lines_for_one_control():
    parsed = parse_answer(SUPPORT, "1. Greeting\n2. Other\nsomething else entirely")
    assert parsed.choices["intent"] == ["Greeting", "Other"]


def test_spans_point_at_the_chosen_labels():
    raw = '{"intent": ["Billing", "Other"]}'
    parsed = parse_answer(SUPPORT, raw)
    assert [raw[a:b] for a, b in parsed.spans["intent"]] == ["Billing", "Other"]


def test_wrong_types_are_ignored_not_crashing():
    for raw in ('{"intent": {"a": 1}}', '{"intent": [null, true, {"x": 1}]}', "[[[[", '{"response": ["x"]}'):
        parsed = parse_answer(SUPPORT, raw)
        assert parsed.choices.get("intent", []) == []
