"""`nextpick report` (docs/attribution.md): the event log's lines in, the online report out, as JSON
and as markdown. Pure; the CLI and the scheduled job (handlers/report_job.py) read the lines through
`report_log.read_report_lines` and store what this builds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from nextpick.domain.attribution import (
    CLICK_WINDOW,
    CLOCK_SKEW,
    PURCHASE_WINDOW,
    attribute,
    read_attribution_log,
)
from nextpick.domain.erasure import iso
from nextpick.domain.online_metrics import RATES, build_report

# The log a report over [start, end] reads: events up to PURCHASE_WINDOW after `end` still count for
# the window's impressions (when the log has them yet), and Firehose partitions by arrival.
READ_AFTER_END = PURCHASE_WINDOW + CLOCK_SKEW


def online_report(
    lines: Iterable[str | bytes], start: datetime, end: datetime, generated_at: datetime
) -> dict[str, Any]:
    log = read_attribution_log(lines)
    outcomes = attribute(log, start, end)
    # Impressions whose purchase window is still open: their conversion may still rise.
    open_windows = sum(1 for o in outcomes if o.served.served_at + PURCHASE_WINDOW > generated_at)
    return {
        "generated_at": iso(generated_at),
        "window": {"start": iso(start), "end": iso(end)},
        "attribution": {
            "click_window_minutes": CLICK_WINDOW / timedelta(minutes=1),
            "purchase_window_hours": PURCHASE_WINDOW / timedelta(hours=1),
            "clock_skew_minutes": CLOCK_SKEW / timedelta(minutes=1),
        },
        "log": {**log.counts.as_dict(), "impressions_with_open_window": open_windows},
        **build_report(outcomes),
    }


_LABELS = {
    "ctr": "CTR",
    "add_to_cart_rate": "add to cart",
    "conversion": "conversion",
    "revenue_per_mille": "revenue / 1000",
}


def _cell(metric: str, estimate: dict[str, float]) -> str:
    if metric in RATES:
        return f"{estimate['value']:.2%} [{estimate['low']:.2%}, {estimate['high']:.2%}]"
    return f"{estimate['value']:.2f} [{estimate['low']:.2f}, {estimate['high']:.2f}]"


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    head = [*keys, "impressions", *(_LABELS[m] for m in _LABELS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [str(row[k]) for k in keys] + [str(row["impressions"])]
        cells += [_cell(m, row[m]) for m in _LABELS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _difference(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2%}" if metric in RATES else f"{value:+.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    window = report["window"]
    attribution = report["attribution"]
    lines = [
        f"# nextpick online report, {window['start']} .. {window['end']}",
        "",
        f"Generated {report['generated_at']}. Clicks count within {attribution['click_window_minutes']:g} min "
        f"of the answer, add to cart and purchases within {attribution['purchase_window_hours']:g} h "
        "(docs/attribution.md). Intervals are 95 % (Wilson for rates, normal for revenue per 1000).",
        "",
        "## Per variant",
        "",
        *_table(report["variants"], ("variant",)),
        "",
        "## Per model version",
        "",
        *_table(report["model_versions"], ("variant", "model_version")),
        "",
    ]
    if report["comparisons"]:
        lines += [
            f"## Against `{report['control']}` (mSPRT, always valid: safe to read at any time)",
            "",
            "| variant | metric | difference | always-valid 95 % interval | significant | detectable at this traffic |",
            "|---|---|---|---|---|---|",
        ]
        for comparison in report["comparisons"]:
            for metric, test in comparison["metrics"].items():
                interval = (
                    f"[{_difference(metric, test['low'])}, {_difference(metric, test['high'])}]"
                    if test["low"] is not None
                    else "n/a"
                )
                lines.append(
                    f"| {comparison['variant']} | {_LABELS[metric]} | {_difference(metric, test['difference'])} "
                    f"| {interval} | {'yes' if test['significant'] else 'no'} "
                    f"| {_difference(metric, test['detectable'])} |"
                )
        lines.append("")
    log = report["log"]
    lines += [
        "## The log",
        "",
        f"{log['impressions']} impressions ({log['shadow_impressions']} shadow, "
        f"{log['impressions_with_open_window']} with the purchase window still open), {log['events']} "
        f"clicks, adds to cart and purchases ({log['cited']} citing an answer, {log['carried_over']} "
        f"carried over); not attributed: {log['cited_unknown']} citing no answer of the window, "
        f"{log['cited_other_shopper']} another shopper's, {log['cited_outside_window']} outside the "
        f"window. {log['duplicate_events']} duplicate events, {log['erased']} erased lines, "
        f"{log['malformed']} malformed lines skipped.",
        "",
    ]
    return "\n".join(lines)
