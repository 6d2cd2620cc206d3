"""Charts as SVG drawn on the server: the dashboard works offline and ships no chart library, pasted or fetched.

Two charts, both on a 0..1 score axis: a run's reward curve (one column per optimiser step) and a project's version
timeline (one column per version, oldest left). Every piece of text in them (versions, statuses, reasons) comes
from Redis and ultimately from an LLM or a person, so it passes through ``escape`` like anything a template shows;
the result is ``Markup`` only because it was built that way.

Elements carry classes and ``data-*`` attributes (``pt champion``, ``data-step``) so tests and curious people can
read the chart's values back from the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


@dataclass(frozen=True)
class Frame:
    """Maps (column, score) to pixels: columns ``0..columns-1`` spread across the plot, scores 0..1 bottom to top."""

    columns: int

    def x(self, column: float) -> float:
        span = WIDTH - LEFT - RIGHT
        if self.columns <= 1:
            return LEFT + span / 2
        return round(LEFT + span * column / (self.columns - 1), 1)

    @staticmethod
    def y(score: float) -> float:
        score = min(1.0, max(0.0, score))
        return round(TOP + (HEIGHT - TOP - BOTTOM) * (1 - score), 1)


def _attrs(**values) -> str:
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"' for k, v in values.items() if v is not None)


def _grid(frame: Frame, labels: Sequence[str], axis: str) -> list[str]:
    out = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = frame.y(tick)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{tick:.2f}</text>')
    every = max(1, len(labels) // 12)
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            out.append(
                f'<text class="tick" x="{frame.x(i)}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    middle = (LEFT + WIDTH - RIGHT) / 2
    out.append(f'<text class="axis" x="{middle}" y="{HEIGHT - 6}" text-anchor="middle">{escape(axis)}</text>')
    return out


def _svg(body: list[str], label: str) -> Markup:
    head = f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"{_attrs(aria_label=label)}>'
    return Markup(head + f"<title>{escape(label)}</title>" + "".join(body) + "</svg>")


def _polyline(points: list[tuple[float, float]], cls: str) -> str:
    if len(points) < 2:
        return ""
    return f'<polyline class="{cls}" points="{" ".join(f"{x},{y}" for x, y in points)}"/>'


def _dot(x: float, y: float, cls: str, tip: str, r: float = 4, **data) -> str:
    return f'<circle class="{cls}" cx="{x}" cy="{y}" r="{r}"{_attrs(**data)}><title>{escape(tip)}</title></circle>'


def _square(x: float, y: float, cls: str, tip: str, **data) -> str:
    return (
        f'<rect class="{cls}" x="{x - 4}" y="{y - 4}" width="8" height="8"{_attrs(**data)}>'
        f"<title>{escape(tip)}</title></rect>"
    )


def reward_curve(curve: dict) -> Markup:
    """Column 0 is the initial policy; column ``s`` is step ``s``: the champion's validation score after it (one
    point per step, joined by a line), the parent's minibatch score, and each candidate's minibatch (circle) and
    validation (square) scores, green when promoted, red when not."""
    steps = curve.get("steps") or []
    frame = Frame(len(steps) + 1)
    body = _grid(frame, ["start", *[str(s["step"]) for s in steps]], "optimiser step")
    champion: list[tuple[float, float]] = []
    parent: list[tuple[float, float]] = []
    marks: list[str] = []
    if curve.get("initial_val") is not None:
        x, y = frame.x(0), frame.y(curve["initial_val"])
        champion.append((x, y))
        marks.append(_dot(x, y, "pt initial", f"initial policy: validation {curve['initial_val']:.3f}", 5))
    for column, step in enumerate(steps, start=1):
        x = frame.x(column)
        if step.get("parent_minibatch") is not None:
            y = frame.y(step["parent_minibatch"])
            parent.append((x, y))
            tip = f"step {step['step']}: parent {step.get('parent')} scored {step['parent_minibatch']:.3f}"
            tip += " on the minibatch"
            marks.append(_dot(x, y, "pt parent", tip, 3, data_step=step["step"]))
        for offset, cand in enumerate(step.get("candidates") or (), start=1):
            state = "accepted" if cand.get("accepted") else "rejected"
            cx = x + 7 * offset
            about = f"step {step['step']} {cand.get('kind')} {cand.get('version') or ''}: {cand.get('status')}"
            about += f" ({cand.get('reason')})" if cand.get("reason") else ""
            if cand.get("minibatch") is not None:
                marks.append(
                    _dot(cx, frame.y(cand["minibatch"]), f"pt cand-mb {state}", f"{about}; minibatch "
                         f"{cand['minibatch']:.3f}", 3, data_step=step["step"])
                )  # fmt: skip
            if cand.get("val") is not None:
                tip = f"{about}; validation {cand['val']:.3f}"
                marks.append(_square(cx, frame.y(cand["val"]), f"pt cand-val {state}", tip, data_step=step["step"]))
        value = step.get("champion_val")
        if value is not None:
            y = frame.y(value)
            champion.append((x, y))
            tip = f"step {step['step']}: champion {step.get('champion')} validation {value:.3f}"
            marks.append(_dot(x, y, "pt champion", tip, 5, data_step=step["step"], data_value=f"{value:.6f}"))
    body += [_polyline(parent, "line parent"), _polyline(champion, "line champion"), *marks]
    return _svg(body, f"Reward curve: {len(steps)} steps")


def version_timeline(versions: Sequence[dict]) -> Markup:
    """Versions in the order they were made (a rollback does not move one): validation score where the optimiser
    recorded one (hollow at 0 where not), the live version ringed and labelled."""
    ordered = sorted(versions, key=lambda v: (v.get("at") or 0.0, v["version"]))
    frame = Frame(len(ordered))
    body = _grid(frame, [v["version"][:9] for v in ordered], "policy versions, oldest first")
    line: list[tuple[float, float]] = []
    marks: list[str] = []
    for column, version in enumerate(ordered):
        x = frame.x(column)
        score = version.get("val_score")
        scored = isinstance(score, int | float) and not isinstance(score, bool)
        y = frame.y(score if scored else 0.0)
        if scored:
            line.append((x, y))
        tip = f"{version['version']}: " + (f"validation {score:.3f}" if scored else "no score recorded")
        cls = "pt version" + (" live" if version.get("live") else "") + ("" if scored else " unscored")
        marks.append(_dot(x, y, cls, tip, 5, data_version=version["version"]))
        if version.get("live"):
            marks.append(f'<circle class="live-ring" cx="{x}" cy="{y}" r="10"/>')
            above = y - 15 if y - 15 > TOP + 8 else y + 24  # under the ring when the point is at the top
            marks.append(f'<text class="live-label" x="{x}" y="{above}" text-anchor="middle">live</text>')
    body += [_polyline(line, "line champion"), *marks]
    return _svg(body, f"Policy versions: {len(ordered)}")
