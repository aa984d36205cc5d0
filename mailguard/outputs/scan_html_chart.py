"""The register's chart: incidents per month as an inline SVG, and the same figures as a table.

Inline SVG, no script: the page must open years later on an air-gapped machine and print in
black and white (warn bars are hatched, not just coloured).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from mailguard.archive.register import Register
from mailguard.outputs.scan_html_markup import esc
from mailguard.outputs.words import count

UNDATED = "undated"
MAX_FILLED_MONTHS = 72
"""Months with no incident are drawn as empty slots up to this span; a wider span (usually
one bogus Date header from 1970) would squeeze every bar to a hairline, so then only
months with incidents are drawn and the chart says so."""
MAX_BAR_LABELS = 24


def chart_section(register: Register) -> str:
    months = register.by_month()
    if not months:
        body = '<p class="notice">No incidents: there is nothing to chart.</p>'
    else:
        body = _chart(months)
    return f'<section id="chart">\n<h2>Incidents over time</h2>\n{body}\n</section>\n'


def _chart(months: dict[str, Counter[str]]) -> str:
    """Stacked bars per month (block at the base, warn above), hatched so print needs no colour."""
    slots, filled = _month_slots(months)
    width, height = 960, 320
    left, right, top, bottom = 52, 16, 44, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    step, ceiling = _scale(max(sum(c.values()) for _, c in slots))
    slot_w = plot_w / len(slots)
    bar_w = min(slot_w * 0.72, 56.0)
    every = max(1, math.ceil(len(slots) / 12))

    def y(value: float) -> float:
        return top + plot_h - value / ceiling * plot_h

    parts = [
        '<defs><pattern id="mg-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f2c14e"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#6b4200" stroke-width="2"/></pattern></defs>'
    ]
    for tick in range(0, ceiling + 1, step):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="{"#444" if tick == 0 else "#ddd"}" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#333">{tick}</text>'
        )
    for n, (key, counts) in enumerate(slots):
        x = left + n * slot_w + (slot_w - bar_w) / 2
        if key == UNDATED and n:
            sep = left + n * slot_w
            parts.append(
                f'<line x1="{sep:.1f}" x2="{sep:.1f}" y1="{top}" y2="{top + plot_h}" '
                'stroke="#888" stroke-dasharray="4 3"/>'
            )
        parts.append(_bars(key, counts, x, bar_w, y, len(slots) <= MAX_BAR_LABELS))
        if key == UNDATED or n % every == 0:
            cx = left + n * slot_w + slot_w / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
                f'font-size="12" fill="#333">{esc(key)}</text>'
            )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="12" fill="#333" '
        f'text-anchor="middle" transform="rotate(-90 14 {top + plot_h / 2:.1f})">'
        "incidents</text>"
        f'<rect x="{left}" y="12" width="14" height="14" fill="#8b0000"/>'
        f'<text x="{left + 20}" y="24" font-size="13">block</text>'
        f'<rect x="{left + 80}" y="12" width="14" height="14" fill="url(#mg-hatch)" '
        'stroke="#6b4200"/>'
        f'<text x="{left + 100}" y="24" font-size="13">warn</text>'
    )
    total = sum(sum(c.values()) for c in months.values())
    dated = [k for k in months if k != UNDATED]
    span = f" from {dated[0]} to {dated[-1]}" if dated else ""
    desc = (
        f"Bar chart of {count(total, 'incident')}{span}, one bar per month, block and warn "
        "stacked." + (f" {sum(months[UNDATED].values())} undated." if UNDATED in months else "")
    )
    note = "" if filled else " Months without incidents are left out: the dates span too long."
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="chart-title">Incidents per month, by verdict</title>'
        f'<desc id="chart-desc">{esc(desc)}</desc>{"".join(parts)}</svg>'
    )
    return (
        f"<figure>{svg}<figcaption>Incidents per month (UTC), by verdict: block solid, warn "
        f"hatched.{esc(note)}</figcaption></figure>\n{_chart_table(slots)}"
    )


def _bars(
    key: str, counts: Counter[str], x: float, w: float, y: Callable[[float], float], label: bool
) -> str:
    out = [f'<g class="slot" data-month="{esc(key)}">']
    base = 0
    for verdict, fill in (("block", "#8b0000"), ("warn", "url(#mg-hatch)")):
        n = counts.get(verdict, 0)
        if not n:
            continue
        y0, y1 = y(base + n), y(base)
        out.append(
            f'<rect class="bar bar-{verdict}" x="{x:.1f}" y="{y0:.1f}" width="{w:.1f}" '
            f'height="{y1 - y0:.1f}" fill="{fill}" stroke="#333" stroke-width="0.5">'
            f"<title>{esc(key)}: {n} {verdict}</title></rect>"
        )
        base += n
    if label and base:
        out.append(
            f'<text x="{x + w / 2:.1f}" y="{y(base) - 4:.1f}" text-anchor="middle" '
            f'font-size="12" font-weight="600">{base}</text>'
        )
    out.append("</g>")
    return "".join(out)


def _chart_table(slots: list[tuple[str, Counter[str]]]) -> str:
    rows = "".join(
        f'<tr><th scope="row">{esc(key)}</th><td class="num">{c.get("block", 0)}</td>'
        f'<td class="num">{c.get("warn", 0)}</td><td class="num">{sum(c.values())}</td></tr>'
        for key, c in slots
    )
    return (
        "<details><summary>The figures in the chart, as a table</summary>"
        '<table class="chart-data"><thead><tr><th scope="col">Month</th>'
        '<th scope="col" class="num">Block</th><th scope="col" class="num">Warn</th>'
        f'<th scope="col" class="num">Total</th></tr></thead><tbody>{rows}</tbody></table>'
        "</details>"
    )


def _month_slots(
    months: dict[str, Counter[str]],
) -> tuple[list[tuple[str, Counter[str]]], bool]:
    """The months to draw, gaps filled with empty months when the span allows; undated last."""
    dated = sorted(k for k in months if k != UNDATED)
    keys, filled = dated, True
    if dated:
        first, last = _month_number(dated[0]), _month_number(dated[-1])
        if last - first < MAX_FILLED_MONTHS:
            keys = [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(first, last + 1)]
        else:
            filled = False
    slots = [(k, months.get(k, Counter())) for k in keys]
    if UNDATED in months:
        slots.append((UNDATED, months[UNDATED]))
    return slots, filled


def _month_number(key: str) -> int:
    year, month = key.split("-")
    return int(year) * 12 + int(month) - 1


def _scale(peak: int) -> tuple[int, int]:
    """A 1-2-5 tick step giving at most five intervals, and the axis top it implies."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if math.ceil(peak / (step * m)) <= 5:
                return step * m, max(step * m * math.ceil(peak / (step * m)), step * m)
        step *= 10
