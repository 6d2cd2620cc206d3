from optimizer.serving.policy import DEFAULT_INSTRUCTION, Demo, Policy, load_prompt


def test_version_is_derived_from_content_only():
    a = Policy("Label it.", (Demo("x", {"c": ["a"]}),), demo_k=2, meta={"job": "1"})
    b = Policy("Label it.", (Demo("x", {"c": ["a"]}),), demo_k=2, meta={"job": "2"})
    assert a.version == b.version and a.version.startswith("pv-")
    assert Policy("Label it!").version != Policy("Label it.").version
    assert Policy("Label it.", demo_k=1).version != Policy("Label it.").version


def test_round_trip_keeps_version_and_meta():
    policy = Policy("p", (Demo("in", {"c": ["a", "b"], "t": "text"}),), 3, {"val_score": 0.5})
    again = Policy.from_json(policy.to_json())
    assert again == policy and again.version == policy.version and again.meta == {"val_score": 0.5}


def test_load_prompt_reads_files_and_text(tmp_path):
    file = tmp_path / "p.txt"
    file.write_text("From a file.\n")
    assert load_prompt(f"@{file}") == "From a file."
    assert load_prompt(str(file)) == "From a file."
    assert load_prompt("Inline prompt") == "Inline prompt"
    assert load_prompt("") == DEFAULT_INSTRUCTION
