"""`nextpick walkthrough`: replay one shopper's session against a running stack and narrate it.

The shopper browses one category, then drifts to another (views, add-to-carts, purchases). After each
event the tool prints how their top-10 changed (entered, left, moved), exactly as `POST /events`
answered it. Then it fires a retrain (`POST /_local/retrain`), reports the model switch (or why the
candidate was rejected) and checks that the shopper's picks survive it: the same user still gets a
personalized list, with some overlap with what they had before.

Everything goes through HTTP, as a shop would call the API; nothing is imported from the stack. The
shopper's calls carry a shopper token bound to them (from `POST /_local/shopper-token`, the local
stand-in for a shop's backend), as a shop's page would; only the operator's look at the live model uses
the server key. Before the session it shows the scopes at work: another shopper's list or the model with
the shopper's token is 403, a call without a credential 401 (docs/security.md)."""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from nextpick_local import state_file
from nextpick_local.demo.walkthrough_client import TOP_K, ApiError, Client, Product, scope_checks
from nextpick_local.http_client import Unreachable

# Each product the shopper looks at gets this little story; it cycles over the session.
STEP_PATTERN = ("view", "view", "add_to_cart", "view", "purchase")
# How many products the shopper looks at in each category.
SHORTLIST_SIZE = 4
# How much of the session stays in the first category before the shopper drifts.
FIRST_CATEGORY_SHARE = 0.5
# Serving re-reads the model pointer on an interval; wait this long for it to pick up a new version.
MODEL_SWITCH_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class TopChange:
    """How a top-K list changed: (rank, item) that entered, items that left, (item, old, new) moves."""

    entered: list[tuple[int, str]]
    left: list[str]
    moved: list[tuple[str, int, int]]

    @property
    def unchanged(self) -> bool:
        return not (self.entered or self.left or self.moved)


def top_change(before: Sequence[str], after: Sequence[str]) -> TopChange:
    old_rank = {item: rank for rank, item in enumerate(before, 1)}
    new_rank = {item: rank for rank, item in enumerate(after, 1)}
    return TopChange(
        entered=[(rank, item) for item, rank in new_rank.items() if item not in old_rank],
        left=[item for item in before if item not in new_rank],
        moved=[
            (item, old_rank[item], rank)
            for item, rank in new_rank.items()
            if item in old_rank and old_rank[item] != rank
        ],
    )


def scopes_section(client: Client, narrator: Narrator, user_id: str) -> bool:
    """Show who may call what; False if any answer is not the one the scopes promise."""
    narrator.say("=== Who may call what (docs/security.md) ===")
    as_promised = True
    for check in scope_checks(client, user_id):
        status, answer = client.http.request(
            check.method,
            check.path,
            credential=check.credential,
            send_credential=check.credential is not None,
        )
        message = answer.get("message", "") if isinstance(answer, dict) else ""
        reason = f" ({message.split(':')[0]})" if status >= 400 and message else ""
        mark = "ok" if status == check.expected else f"UNEXPECTED, should be {check.expected}"
        narrator.say(f"  {check.who:<40} {check.method} {check.path:<44} -> {status}{reason}  {mark}")
        as_promised = as_promised and status == check.expected
    return as_promised


class WaitingBar:
    """A plain-text bar on stderr for a wait of unknown length (a retrain, a model switch): a block
    sweeps back and forth while time counts up. Redrawn in place on a terminal; a line every 10 s
    otherwise, so a log is not flooded. (progress.Progress is the bar for counted work.)"""

    WIDTH = 28
    BLOCK = 4
    LINE_EVERY_SECONDS = 10.0

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.started = time.monotonic()
        self.interactive = stream.isatty()
        self._last_line = 0.0

    def update(self) -> None:
        elapsed = time.monotonic() - self.started
        travel = self.WIDTH - self.BLOCK
        step = int(elapsed * 4) % (2 * travel)
        position = step if step < travel else 2 * travel - step
        bar = " " * position + "#" * self.BLOCK + " " * (travel - position)
        line = f"{self.label} [{bar}] {elapsed:5.1f}s"
        if self.interactive:
            self.stream.write("\r" + line)
        elif elapsed - self._last_line >= self.LINE_EVERY_SECONDS:
            self._last_line = elapsed
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        elapsed = time.monotonic() - self.started
        summary = f"{self.label}: done in {elapsed:.1f}s"
        if self.interactive:
            # Overwrite the whole bar line, not just its start.
            summary = "\r" + summary.ljust(len(self.label) + self.WIDTH + 10)
        self.stream.write(summary + "\n")
        self.stream.flush()


def wait_with_progress(label: str, work: Callable[[], Any]) -> Any:
    """Run a blocking call in a thread while a progress bar shows that it is still going."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    progress = WaitingBar(label)
    while worker.is_alive():
        progress.update()
        worker.join(0.25)
    progress.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@dataclass(frozen=True)
class Phase:
    """A stretch of the session spent in one category."""

    category: str
    events: int


def plan_phases(products: list[Product], events: int, rng: random.Random) -> list[Phase]:
    """Two categories (chosen by the seed among those with enough products in stock, so every planned
    add-to-cart or purchase is something a real shopper could do): the first, then the drift."""
    in_stock = Counter(p.category for p in products if p.stock > 0)
    eligible = sorted(c for c, count in in_stock.items() if count >= SHORTLIST_SIZE)
    if len(eligible) < 2:
        raise SystemExit(f"the catalog needs {SHORTLIST_SIZE} products in stock in at least two categories")
    first, second = rng.sample(eligible, 2)
    first_events = max(1, round(events * FIRST_CATEGORY_SHARE))
    return [Phase(first, first_events), Phase(second, events - first_events)]


def shortlist(
    client: Client, user_id: str, category: str, products: list[Product], rng: random.Random
) -> list[Product]:
    """The products this shopper looks at in `category`: what the shop recommends them there right now
    (the API's category filter), topped up with other products in stock if it shows fewer."""
    by_id = {p.item_id: p for p in products}
    shown = [
        by_id[item]
        for item in item_ids(client.recommendations(user_id, k=SHORTLIST_SIZE, category=category))
        if item in by_id and by_id[item].stock > 0
    ]
    others = [p for p in products if p.category == category and p.stock > 0 and p not in shown]
    return shown + rng.sample(others, max(0, SHORTLIST_SIZE - len(shown)))


def steps(products: list[Product], count: int) -> list[tuple[Product, str]]:
    """`count` events over the shortlist: each product gets STEP_PATTERN in turn, and the second view
    of a cycle goes to the next product, as a shopper comparing two products would."""
    planned = []
    for step in range(count):
        cycle, beat = divmod(step, len(STEP_PATTERN))
        product = products[(cycle + (1 if beat == 1 else 0)) % len(products)]
        planned.append((product, STEP_PATTERN[beat]))
    return planned


class Narrator:
    """Prints the session in terms a person follows: product titles, categories, ranks."""

    def __init__(self, products: dict[str, Product], out: TextIO) -> None:
        self.products = products
        self.out = out

    def name(self, item_id: str) -> str:
        product = self.products.get(item_id)
        return f"{product.title} ({product.category})" if product else f"{item_id} (not in catalog)"

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def top_list(self, items: Sequence[str], indent: str = "    ") -> None:
        if not items:
            self.say(f"{indent}(empty: no model is serving yet?)")
        for rank, item in enumerate(items, 1):
            self.say(f"{indent}{rank:>2}. {self.name(item)}")

    def category_mix(self, items: Sequence[str]) -> str:
        counts = Counter(
            self.products[item].category if item in self.products else "unknown" for item in items
        )
        return ", ".join(f"{category} {count}" for category, count in counts.most_common())

    def change(self, change: TopChange) -> None:
        if change.unchanged:
            self.say("        = top-10 unchanged")
        for rank, item in change.entered:
            self.say(f"        ↑ entered at #{rank}: {self.name(item)}")
        for item in change.left:
            self.say(f"        ↓ left: {self.name(item)}")
        for item, old, new in change.moved:
            arrow = "↗" if new < old else "↘"
            self.say(f"        {arrow} moved #{old} → #{new}: {self.name(item)}")


def item_ids(body: dict[str, Any]) -> list[str]:
    return [rec["item_id"] for rec in body.get("recommendations", [])]


def send(
    client: Client, user_id: str, session_id: str, product: Product, event_type: str
) -> tuple[dict, float]:
    """One tracked event through `POST /events`: the answer and the measured round trip (ms)."""
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "user_id": user_id,
        "item_id": product.item_id,
        "event_type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        "session_id": session_id,
    }
    if event_type in ("add_to_cart", "purchase"):
        event["quantity"] = 1
    if event_type == "purchase":
        event["price"] = product.price
    started = time.perf_counter()
    answer = client.track(event)
    return answer, (time.perf_counter() - started) * 1000


def replay(
    client: Client,
    narrator: Narrator,
    user_id: str,
    phases: list[Phase],
    products: list[Product],
    rng: random.Random,
) -> list[str]:
    """Send the session's events one by one; print each answer's change. Returns the final top-10."""
    session_id = f"walkthrough-{uuid.uuid4().hex[:12]}"
    current = item_ids(client.recommendations(user_id))
    narrator.say(f"Starting top-{TOP_K} of {user_id}:")
    narrator.top_list(current)
    total, position = sum(phase.events for phase in phases), 0
    for phase in phases:
        looked_at = shortlist(client, user_id, phase.category, products, rng)
        narrator.say()
        narrator.say(f"--- {user_id} browses {phase.category}: {', '.join(p.title for p in looked_at)}")
        for product, event_type in steps(looked_at, phase.events):
            position += 1
            answer, round_trip_ms = send(client, user_id, session_id, product, event_type)
            after = item_ids(answer)
            narrator.say(
                f"[{position:>2}/{total}] {event_type:<11} {narrator.name(product.item_id)}"
                f" -> {answer['status']}, server {answer['took_ms']:.1f} ms, round trip {round_trip_ms:.1f} ms"
            )
            narrator.change(top_change(current, after))
            narrator.say(f"        top-10 by category: {narrator.category_mix(after)}")
            current = after
    return current


def describe_retrain(result: dict[str, Any], before: str | None) -> str:
    status = result.get("status")
    reason = result.get("reason", "")
    if status == "published":
        return f"switched: {before or 'none'} → {result.get('published_version')} ({reason})"
    if status == "rejected":
        return f"kept: {before} (candidate {result.get('candidate_version')} rejected, reason: {reason})"
    return f"kept: {before} (retrain {status}: {reason or result.get('error', '')})"


def wait_for_model(client: Client, version: str) -> str | None:
    """Serving polls the model pointer; wait until the API answers with `version` (or give up)."""
    deadline = time.monotonic() + MODEL_SWITCH_TIMEOUT_SECONDS
    progress = WaitingBar("waiting for serving to load the new model")
    serving = client.model_version()
    while serving != version and time.monotonic() < deadline:
        progress.update()
        time.sleep(0.5)
        serving = client.model_version()
    progress.close()
    return serving


def retrain_section(client: Client, narrator: Narrator, user_id: str, before_top: list[str]) -> bool:
    """Fire a retrain, report the version decision, and check the shopper's picks survive it."""
    narrator.say("=== Retrain ===")
    version_before = client.model_version()
    narrator.say(f"model before: {version_before}")
    result = wait_with_progress("retraining", client.retrain)
    narrator.say(f"retrain {result.get('status')}: {describe_retrain(result, version_before)}")
    if result.get("status") == "published":
        serving = wait_for_model(client, result["published_version"])
        if serving != result["published_version"]:
            narrator.say(f"serving still answers with {serving} after {MODEL_SWITCH_TIMEOUT_SECONDS:.0f} s")
            return False
    answer = client.recommendations(user_id)
    after_top = item_ids(answer)
    cold_start = item_ids(client.recommendations(f"walkthrough-cold-{uuid.uuid4().hex[:8]}"))
    narrator.say(f"model now: {answer.get('model_version')}")
    narrator.say(f"{user_id}'s top-{TOP_K} after the retrain:")
    narrator.top_list(after_top)
    overlap = len(set(before_top) & set(after_top))
    personalized = bool(after_top) and after_top != cold_start
    narrator.say(f"overlap with the list before the retrain: {overlap}/{TOP_K}")
    narrator.say(
        "still personalized: "
        + (
            "yes (differs from a brand-new shopper's list)"
            if personalized
            else "NO (same as a brand-new shopper's list)"
        )
    )
    narrator.say(f"top-10 by category: {narrator.category_mix(after_top)}")
    return personalized


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nextpick walkthrough",
        description="Replay a shopper's session against a running stack and show how their picks change.",
    )
    parser.add_argument("--api-url", help="base URL of the API (default: from the local stack's state file)")
    parser.add_argument(
        "--server-key",
        help="the server key, for the operator's look at the live model (default: from the state file)",
    )
    parser.add_argument(
        "--state-file", type=Path, help="the local stack's state file (default: .nextpick/local.json)"
    )
    parser.add_argument("--user", help="the shopper's user id (default: a new walkthrough shopper)")
    parser.add_argument("--events", type=int, default=20, help="how many events to replay (default: 20)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the product choice")
    parser.add_argument("--no-retrain", action="store_true", help="stop after the replay")
    args = parser.parse_args(argv)
    if args.events < 2:
        parser.error("--events must be at least 2 (one per category)")
    if not (args.api_url and args.server_key):
        path = args.state_file or state_file.default_path()
        state = state_file.read(path) or {}
        args.api_url = args.api_url or state.get("api_url")
        args.server_key = args.server_key or state.get("server_key")
        if not (args.api_url and args.server_key):
            parser.error(
                f"--api-url and --server-key are needed: no running local stack found ({path} is missing)"
            )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    client = Client(args.api_url, args.server_key)
    user_id = args.user or f"walkthrough-{uuid.uuid4().hex[:8]}"
    try:
        products = client.catalog()
        narrator = Narrator({p.item_id: p for p in products}, sys.stdout)
        phases = plan_phases(products, args.events, rng)
        narrator.say(
            f"Shopper {user_id}: {args.events} events, browsing {phases[0].category}"
            f" then drifting to {phases[1].category}"
        )
        narrator.say(f"API {client.base_url}, model {client.model_version()}")
        narrator.say()
        if not scopes_section(client, narrator, user_id):
            return 1
        narrator.say()
        final_top = replay(client, narrator, user_id, phases, products, rng)
        narrator.say()
        if args.no_retrain:
            return 0
        return 0 if retrain_section(client, narrator, user_id, final_top) else 1
    except ApiError as error:
        print(f"nextpick walkthrough: the API refused a call: {error}", file=sys.stderr)
        return 2
    except Unreachable as error:
        print(f"nextpick walkthrough: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
