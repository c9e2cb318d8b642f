"""Plot geometry shared by the HTML report and the web UI. Python turns data into SVG
coordinates and the `svg_plot` macro of `plots.html.j2` draws them, so a plot needs neither
JavaScript nor anything from the network."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from archlab.records import final_verdict

WIDTH, HEIGHT = 600, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 12, 10, 34  # margins: room for the tick labels
#: distinct line colours, for curves of several trials
PALETTE = ("#2563eb", "#d97706", "#7c3aed", "#0d9488", "#db2777", "#65a30d")
#: the params plot's dots by what became of the candidate, with the legend's words
OUTCOME_COLORS = {
    "accept": ("#17803d", "accepted"),
    "reject": ("#b42318", "rejected or failed"),
    None: ("#2563eb", "undecided"),
}


@dataclass
class Dot:
    x: float
    y: float
    title: str
    href: str | None = None
    color: str = PALETTE[0]


@dataclass
class Line:
    label: str
    points: list[tuple[float, float]]
    color: str = PALETTE[0]


@dataclass
class Plot:
    """SVG-ready geometry: pixel coordinates inside a WIDTH x HEIGHT box."""

    x_label: str
    y_label: str
    dots: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    #: what the dots' colours mean: (colour, words)
    legend: list[tuple[str, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.dots and not self.lines

    @property
    def frame(self) -> dict[str, int]:
        """The axes' corners: (left, bottom) is the origin."""
        return {"left": _LEFT, "right": WIDTH - _RIGHT, "top": _TOP, "bottom": HEIGHT - _BOTTOM}


def _ticks(low: float, high: float, log: bool, whole: bool = False) -> list[float]:
    """Round values between low and high: on a log axis powers of ten, else 3 to 8 steps of
    1, 2 or 5 times a power of ten (whole numbers only where `whole`)."""
    if log:  # decades, and 2 and 5 times them where there are few decades
        decades = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
        marks = (1,) if len(decades) > 2 else (1, 2, 5)
        return [m * 10.0**e for e in decades for m in marks if low <= m * 10.0**e <= high]
    if high <= low:
        return [low]
    target = (high - low) / 3
    power = 10.0 ** math.floor(math.log10(target))
    # (log10 may round just under a power of ten up to it: then 5 times the one below)
    step = max([m * power for m in (1, 2, 5) if m * power <= target] or [power / 2])
    step = max(step, 1.0) if whole else step
    start = math.ceil(low / step - 1e-9) * step
    return [start + i * step for i in range(int((high - start) / step + 1e-9) + 1)]


def _tick_label(value: float) -> str:
    if not float(value).is_integer():
        return f"{value:.3g}"
    if abs(value) < 1e4:
        return f"{value:.0f}"
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e")  # 2e4, not 20000


def plot(
    x_label: str,
    y_label: str,
    dots: Iterable[Dot] = (),
    lines: Iterable[Line] = (),
    log_x: bool = False,
    whole_x: bool = False,
) -> Plot:
    """Fit dots and lines (in data coordinates) into the box, with axis ticks (on the x axis
    whole numbers only where `whole_x`)."""
    dots, lines = list(dots), [line for line in lines if line.points]
    xs = [d.x for d in dots] + [x for line in lines for x, _ in line.points]
    ys = [d.y for d in dots] + [y for line in lines for _, y in line.points]
    result = Plot(x_label, y_label)
    if log_x:
        xs = [x for x in xs if x > 0]
    if not xs:
        return result
    scale_x: Callable[[float], float] = math.log10 if log_x else float
    x0, x1 = scale_x(min(xs)), scale_x(max(xs))
    y0, y1 = min(ys), max(ys)
    x_span, y_span = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    inner_w, inner_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return round(_LEFT + inner_w * (scale_x(x) - x0) / x_span, 1)

    def py(y: float) -> float:
        return round(HEIGHT - _BOTTOM - inner_h * (y - y0) / y_span, 1)

    result.dots = [
        {"x": px(d.x), "y": py(d.y), "title": d.title, "href": d.href, "color": d.color}
        for d in dots
        if d.x > 0 or not log_x
    ]
    result.lines = [
        {
            "label": line.label,
            "color": line.color,
            "points": " ".join(f"{px(x)},{py(y)}" for x, y in line.points if x > 0 or not log_x),
        }
        for line in lines
    ]
    low_x, high_x = min(xs), max(xs)
    result.x_ticks = [(px(t), _tick_label(t)) for t in _ticks(low_x, high_x, log_x, whole_x)]
    result.y_ticks = [(py(t), _tick_label(t)) for t in _ticks(y0, y1, False)]
    return result


def _best_so_far(scores: list[tuple[float, float]]) -> list[tuple[float, float]]:
    path, best = [], float("-inf")
    for x, s in scores:
        best = max(best, s)
        path.append((x, best))
    return path


def score_plot(candidates: list[dict[str, Any]], href: Callable[[str], str]) -> Plot:
    """Each candidate's score in the order they were made, and the best so far (scores
    are fitness: higher is always better)."""
    scored = [(i + 1, c) for i, c in enumerate(candidates) if c["score"] is not None]
    dots = [
        Dot(i, c["score"], f"{c['candidate_id'][:8]}: {c['score']:.4f}", href(c["candidate_id"]))
        for i, c in scored
    ]
    best = Line("best so far", _best_so_far([(i, c["score"]) for i, c in scored]), "#17803d")
    return plot("candidate, in order", "score", dots, [best], whole_x=True)


def params_plot(
    candidates: list[dict[str, Any]], href: Callable[[str], str], verdicts: dict[str, Any]
) -> Plot:
    """Score against parameter count (log scale), coloured by the verdict (`verdicts`: the
    stored verdict word by candidate id; a failed candidate counts as rejected)."""

    def outcome(c: dict[str, Any]) -> str | None:
        if c["status"] not in ("ok", "duplicate", "stopped"):
            return "reject"
        return final_verdict(verdicts.get(c["candidate_id"]))

    dots = [
        Dot(
            c["n_params"],
            c["score"],
            f"{c['candidate_id'][:8]}: {c['score']:.4f}, {c['n_params']:,} parameters",
            href(c["candidate_id"]),
            OUTCOME_COLORS.get(outcome(c), OUTCOME_COLORS[None])[0],
        )
        for c in candidates
        if c["score"] is not None and c["n_params"]
    ]
    result = plot("parameters", "score", dots, log_x=True)
    shown = {d.color for d in dots}
    result.legend = [(color, words) for color, words in OUTCOME_COLORS.values() if color in shown]
    return result


def curve_plots(trials: list[dict[str, Any]]) -> list[Plot]:
    """The training loss and each held-out metric against the step, a line per trial."""
    series: dict[str, list[Line]] = {}
    for i, t in enumerate(trials):
        points: dict[str, list[tuple[float, float]]] = {}
        for p in t["loss_curve"] or []:
            points.setdefault("training loss", []).append((p["step"], p["loss"]))
        for p in t["curve"] or []:
            for key, value in p.items():
                if key != "step" and isinstance(value, int | float):
                    points.setdefault(key, []).append((p["step"], float(value)))
        label, color = f"{t['stage']} seed {t['seed']}", PALETTE[i % len(PALETTE)]
        for metric, line in points.items():
            series.setdefault(metric, []).append(Line(label, line, color))
    return [plot("step", metric, lines=lines, whole_x=True) for metric, lines in series.items()]
