"""Label configs and paths the tests share, so a test names the config it uses instead of spelling XML again."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SUPPORT_CONFIG = """<View>
 <Paragraphs name="chat" value="$dialogue" layout="dialogue" />
 <Header value="User prompt:" />
 <View className="prompt"><TextArea name="prompt" toName="chat" rows="4" editable="true" /></View>
 <Header value="Bot answer:" />
 <TextArea name="response" toName="chat" rows="4" editable="true" />
 <Choices name="intent" toName="chat" choice="multiple">
   <Choice value="Greeting"/><Choice value="Account_Verification"/><Choice value="Technical_Support"/>
   <Choice value="Information_Request"/><Choice value="Billing"/><Choice value="Complaint"/>
   <Choice value="Feedback"/><Choice value="Cancellation"/><Choice value="Order_Status"/><Choice value="Other"/>
 </Choices>
</View>"""

REWARD_CONFIG = (
    '<View><Text name="input" value="$prompt"/><Text name="output" value="$response"/>'
    '<Choices name="reward" toName="output"><Choice value="1">Good</Choice><Choice value="0">Bad</Choice>'
    "</Choices></View>"
)

THREE_CONTROLS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="topics" toName="text" choice="multiple">
    <Choice value="billing"/><Choice value="shipping"/><Choice value="returns"/>
  </Choices>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="positive"/><Choice value="neutral"/><Choice value="negative"/>
  </Choices>
  <Choices name="urgency" toName="text" choice="single-radio">
    <Choice value="low"/><Choice value="high"/>
  </Choices>
</View>"""

# One config per tag family of optimizer.labelstudio.tags, each also run against a real Label Studio.
NER_CONFIG = """<View>
  <Labels name="ner" toName="text">
    <Label value="PER"/><Label value="ORG"/><Label value="LOC"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""

NUMBER_CONFIG = '<View><Text name="text" value="$text"/><Number name="amount" toName="text" min="0" max="100"/></View>'

RATING_CONFIG = '<View><Text name="text" value="$text"/><Rating name="stars" toName="text" maxRating="5"/></View>'

TAXONOMY_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Taxonomy name="topic" toName="text">
    <Choice value="Animal"><Choice value="Cat"/><Choice value="Dog"/></Choice>
    <Choice value="Plant"><Choice value="Tree"/></Choice>
  </Taxonomy>
</View>"""

PAIRWISE_CONFIG = """<View>
  <Pairwise name="pw" toName="first,second"/>
  <Text name="first" value="$first"/>
  <Text name="second" value="$second"/>
</View>"""
