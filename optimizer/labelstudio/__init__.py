"""What Label Studio speaks: label configs, task data as text, the result format, and the REST client.

The bottom layer. It knows nothing about LLMs, prompts or Redis, so everything above can lean on it.
"""
