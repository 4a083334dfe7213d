"""`nextpick replay FILE.jsonl`: tracked events from a file, through `POST /events`, in batches.

A batch the API refuses (422: one invalid event refuses the whole request) is re-sent event by event,
so the summary names exactly which lines were rejected and why."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nextpick_local.progress import Progress

# Sends one `POST /events` body; (status, parsed answer).
Post = Callable[[Any], tuple[int, Any]]
MAX_REJECTIONS_SHOWN = 10


@dataclass
class ReplaySummary:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    # Requests that failed for another reason (5xx, 403): their events' fate is unknown.
    errors: int = 0
    # (first line, why), reported in line order.
    rejections: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line: int, why: str) -> None:
        self.rejected += 1
        self.rejections.append((line, f"line {line}: {why}"))

    def describe(self) -> str:
        lines = [
            f"accepted {self.accepted}, duplicate {self.duplicate}, rejected {self.rejected}, failed requests {self.errors}"
        ]
        lines += [f"  {why}" for _, why in sorted(self.rejections)[:MAX_REJECTIONS_SHOWN]]
        if len(self.rejections) > MAX_REJECTIONS_SHOWN:
            lines.append(f"  ... and {len(self.rejections) - MAX_REJECTIONS_SHOWN} more")
        return "\n".join(lines)


def read_events(path: Path, summary: ReplaySummary) -> Iterator[tuple[int, Any]]:
    """(line number, event object) for every non-blank line; lines that are not JSON objects are rejected."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                summary.reject(number, f"not JSON ({error.msg})")
                continue
            if not isinstance(event, dict):
                summary.reject(number, "not a JSON object")
                continue
            yield number, event


def _why(body: Any) -> str:
    if isinstance(body, dict):
        errors = body.get("errors") or []
        details = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        return details or str(body.get("message"))
    return str(body)[:200]


def _count(summary: ReplaySummary, body: Any) -> None:
    for result in body.get("results", [body]) if isinstance(body, dict) else []:
        if result.get("status") == "duplicate":
            summary.duplicate += 1
        else:
            summary.accepted += 1


def _send(post: Post, batch: list[tuple[int, Any]], summary: ReplaySummary) -> None:
    body = {"events": [event for _, event in batch]} if len(batch) > 1 else batch[0][1]
    code, answer = post(body)
    if code == 200:
        _count(summary, answer)
    elif code in (400, 413, 422) and len(batch) > 1:
        for single in batch:
            _send(post, [single], summary)
    elif code in (400, 413, 422):
        summary.reject(batch[0][0], f"{code} {_why(answer)}")
    else:
        summary.errors += 1
        summary.rejections.append(
            (batch[0][0], f"lines {batch[0][0]}-{batch[-1][0]}: request failed: {code} {_why(answer)}")
        )


def replay(path: Path, batch_size: int, post: Post) -> ReplaySummary:
    summary = ReplaySummary()
    events = list(read_events(path, summary))
    with Progress("replay", len(events)) as progress:
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            _send(post, batch, summary)
            progress.advance(len(batch))
    return summary
