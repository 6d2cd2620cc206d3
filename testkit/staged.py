"""A scripted LLM that makes two training runs promote two versions in turn, for the dashboard's seeded project.

The labeller's accuracy depends on the instruction it is given: none right under the default prompt, two thirds
right (every item whose number is not a multiple of 3) under :data:`LEVEL_ONE`, all right under :data:`LEVEL_TWO`.
The proposer proposes the level of the current ``stage``: run one (stage 1) finds LEVEL_ONE, run two (stage 2)
finds LEVEL_TWO. Both gains are large enough on the validation split of 60 gold items to pass the promotion rule.

The LEVEL_TWO instruction carries markup (``<script>``, ``<b>``) on purpose: a prompt is data, and every page must
show it as text.
"""

from __future__ import annotations

import json
import re

from testkit.fakellm import Reply, keyword_answer, labels_from_system, last_user, system_text

LEVEL_ONE = "LEVEL-ONE"
LEVEL_TWO = "LEVEL-TWO"
HOSTILE = '<script>window.__pwned = 1</script><b>bold</b> & "quoted"'
INSTRUCTIONS = {
    1: f"{LEVEL_ONE}: choose the intent the customer names.",
    2: f"{LEVEL_ONE}: choose the intent the customer names.\n{LEVEL_TWO} {HOSTILE}: match the label words exactly.",
}
N_GOLD = 60


class StagedResponder:
    def __init__(self) -> None:
        self.stage = 1

    def __call__(self, body: dict) -> Reply:
        if not labels_from_system(body):
            return Reply(INSTRUCTIONS[self.stage])
        system = system_text(body)
        number = re.search(r"#(\d+)", last_user(body))
        right = LEVEL_TWO in system or (LEVEL_ONE in system and number is not None and int(number[1]) % 3 != 0)
        if right:
            return Reply(json.dumps(keyword_answer(body)))
        return Reply(json.dumps({name: ["Other"] for name in labels_from_system(body)}))
