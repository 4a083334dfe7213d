"""The cost sections of docs/capacity.md: a month at 10M, 100M and 1B events on every line, next to
Amazon Personalize, on each way in, and the storage as months pass (bench.capacity's model)."""

from __future__ import annotations

from bench.capacity import (
    MONTHLY_EVENTS,
    SECONDS_PER_MONTH,
    Measurements,
    api_rest_cost,
    front_doors,
    monthly_cost,
    storage_after,
)
from bench.common import fmt, table
from bench.cost import (
    ASSUMED_PERSONALIZE_EVENT_BYTES,
    ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN,
    ASSUMED_TRAINING_RUNS_PER_MONTH,
    GB,
    PRICES,
    _tps_hours_cost,
)
from bench.kinesis_cost import cost_rows


def personalize(events: int, front: float) -> dict[str, float]:
    return {
        "inference (TPS-hours, min 1 TPS)": _tps_hours_cost(max(730.0, events / 3600)),
        "ingestion": events * ASSUMED_PERSONALIZE_EVENT_BYTES / GB * PRICES["personalize_ingest_gb"].amount,
        "training": ASSUMED_TRAINING_RUNS_PER_MONTH
        * ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN
        * PRICES["personalize_training_hour"].amount,
        "API + Lambda front": front,
    }


def cost_tables(m: Measurements) -> str:
    costs = [monthly_cost(m, events, m.api, api_rest_cost(events)) for events in MONTHLY_EVENTS]
    names = list(costs[0].lines)
    rows = [[name, *(f"{c.lines[name]:,.2f}" for c in costs)] for name in names]
    rows.append(["**nextpick total**", *(f"**{c.total:,.2f}**" for c in costs)])
    rows.append(["$ per million events", *(f"{c.total / (c.events / 1e6):,.2f}" for c in costs)])
    persona = [
        personalize(c.events, api_rest_cost(c.events) + cost_rows(m.api)["Lambda"] * c.events / 1e6)
        for c in costs
    ]
    for name in persona[0]:
        rows.append([f"Personalize: {name}", *(f"{p[name]:,.2f}" for p in persona)])
    rows.append(["**Personalize total**", *(f"**{sum(p.values()):,.2f}**" for p in persona)])
    rows.append(
        [
            "Personalize ÷ nextpick",
            *(f"{sum(p.values()) / c.total:.1f}x" for p, c in zip(persona, costs, strict=True)),
        ]
    )
    header = [
        "$ per month",
        *(f"{e / 1e6:,.0f}M events (~{e / SECONDS_PER_MONTH:,.1f}/s)" for e in MONTHLY_EVENTS),
    ]
    doors = []
    for events in MONTHLY_EVENTS:
        for name, (path, front) in front_doors(m, events).items():
            doors.append((name, events, monthly_cost(m, events, path, front)))
    door_names = list(dict.fromkeys(name for name, _, _ in doors))
    door_rows = [
        [name, *(f"{c.lines['front door']:,.2f} / **{c.total:,.2f}**" for n, _, c in doors if n == name)]
        for name in door_names
    ]
    return "\n\n".join(
        [
            table(header, rows),
            "### Ingress options",
            "The same month on each way in: the front door's own cost / the whole month (every line above, "
            "with that path's measured Lambda duration and state reads and writes). Only the API answers "
            "with fresh recommendations; the bus and Kinesis take events from a shop's backend and answer "
            "nothing (the page asks `GET /users/{id}/recommendations` when it needs a list, a read: 4 RRU, "
            "no write). Kinesis folds one shopper's events of a batch into one write, which is where its "
            "savings come from (docs/kinesis.md).",
            table(["front door", *header[1:]], door_rows),
        ]
    )


def storage_table(m: Measurements) -> str:
    rows = []
    for events in MONTHLY_EVENTS:
        for months in (1, 12, 24):
            state_gb, state_cost, log_gb, log_cost = storage_after(m, events, months)
            rows.append(
                [
                    f"{events / 1e6:,.0f}M/month",
                    str(months),
                    f"{fmt(state_gb)} GB",
                    f"{state_cost:,.2f}",
                    f"{fmt(log_gb)} GB",
                    f"{log_cost:,.2f}",
                ]
            )
    return table(
        ["traffic", "after months", "state table", "$/month (storage + PITR)", "S3 event log", "$/month"],
        rows,
    )
