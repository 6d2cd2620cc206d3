"""The tasks every benchmark sends: a customer-support intent config and short, distinct messages."""

from __future__ import annotations

LABELS = ["Billing", "Technical_Support", "Cancellation", "Order_Status", "Account", "Other"]

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="intent" toName="text" choice="single">'
    + "".join(f'<Choice value="{label}"/>' for label in LABELS)
    + "</Choices></View>"
)

MESSAGES = [
    "I was charged twice for my subscription this month.",
    "The app crashes every time I open the settings page.",
    "Please cancel my plan at the end of the billing period.",
    "Where is my order? It was supposed to arrive on Monday.",
    "I cannot log in to my account after changing my email.",
    "Do you have a store in Berlin?",
    "My invoice shows the wrong VAT number.",
    "The export button does nothing in Firefox.",
    "How do I close my account for good?",
    "The tracking page says my parcel is stuck in customs.",
    "I forgot my password and the reset mail never comes.",
    "Can I speak to someone about a partnership?",
    "Why did my card get declined at checkout?",
    "Sync stopped working after the last update.",
    "I want to downgrade instead of cancelling.",
    "My package arrived damaged, what now?",
]


def texts(n: int, offset: int = 0) -> list[str]:
    """``n`` distinct inputs (a running number keeps them distinct, so nothing is served from a cache)."""
    return [f"{MESSAGES[(offset + i) % len(MESSAGES)]} (ref {offset + i})" for i in range(n)]


def predict_body(n: int, offset: int = 0, project: str = "bench.1") -> dict:
    return {
        "tasks": [{"id": offset + i, "data": {"text": t}} for i, t in enumerate(texts(n, offset))],
        "label_config": CONFIG,
        "project": project,
    }
