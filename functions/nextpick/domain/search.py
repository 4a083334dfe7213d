"""A search event's query resolved against the catalog: the few items it names (docs/model-contract.md,
"Search and review events").

Words are casefolded runs of letters and digits (`\\w+`), at least 2 characters, without a handful of
English function words ("for", "the", ...). An item's words are those of its title and of the values of
its attribute tokens (`nextpick.domain.item_attributes.item_tokens`: category and attributes, the one
tokenizer training uses; numbers banded, so a query's digits do not match a price). An item's score is
the number of distinct query words among its words; the query names the `MAX_MATCHED_ITEMS` best
items, best score first, then by item id (deterministic for a given catalog). Out-of-stock items count:
the search says what the shopper wants, whether or not it is on the shelf today.

The resolution is stored with the event (the state's recent events and the log record), so nothing
here is ever evaluated twice for one event."""

from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.events import AnyEvent, SearchEvent
from nextpick.domain.item_attributes import item_tokens

# A search folds at most this many matched items: enough to say "running shoes" means the running
# shoes aisle, few enough that one search (strength 1/M' each, summing to one view) cannot flood the
# state's 50 recent events.
MAX_MATCHED_ITEMS = 5
MIN_WORD_LENGTH = 2
STOP_WORDS = frozenset({"a", "an", "and", "for", "in", "of", "on", "or", "the", "to", "with", "by", "at"})
_WORD = re.compile(r"\w+")


def words(text: str) -> set[str]:
    """The distinct searchable words of a text."""
    return {
        word
        for word in _WORD.findall(text.casefold())
        if len(word) >= MIN_WORD_LENGTH and word not in STOP_WORDS
    }


def item_words(category: str | None, title: str | None, attributes: dict[str, object] | None) -> set[str]:
    """An item's searchable words: its title and the values of its attribute tokens."""
    found = words(title or "")
    for token in item_tokens(category, None, attributes):
        found |= words(token.split("=", 1)[1])
    return found


@dataclass(frozen=True)
class SearchIndex:
    """Word -> the ids of the items having it, for one catalog snapshot."""

    snapshot_id: int
    postings: dict[str, tuple[str, ...]]

    @classmethod
    def build(cls, snapshot: CatalogSnapshot) -> SearchIndex:
        attributes_of: dict[str, dict[str, object]] = defaultdict(dict)
        for name, column in snapshot.attributes.items():
            for item_id, value in column.items():
                attributes_of[item_id][name] = value
        item_ids = set(snapshot.category_of) | set(snapshot.title_of) | set(attributes_of)
        postings: dict[str, list[str]] = defaultdict(list)
        for item_id in sorted(item_ids):
            found = item_words(
                snapshot.category_of.get(item_id), snapshot.title_of.get(item_id), attributes_of.get(item_id)
            )
            for word in found:
                postings[word].append(item_id)
        return cls(snapshot.snapshot_id, {word: tuple(ids) for word, ids in postings.items()})

    def resolve(self, query: str, limit: int = MAX_MATCHED_ITEMS) -> tuple[str, ...]:
        """The at most `limit` item ids the query names best (score, then id); () if none."""
        scores: Counter[str] = Counter()
        for word in words(query):
            scores.update(self.postings.get(word, ()))  # counted in C: a common word names every item
        best = heapq.nsmallest(limit, scores.items(), key=lambda pair: (-pair[1], pair[0]))
        return tuple(item_id for item_id, _ in best)


class SearchIndexCache:
    """Keeps the index of the live snapshot; rebuilt only when the snapshot changes."""

    def __init__(self) -> None:
        self._index: SearchIndex | None = None

    def get(self, snapshot: CatalogSnapshot) -> SearchIndex:
        index = self._index
        if index is None or index.snapshot_id != snapshot.snapshot_id:
            index = self._index = SearchIndex.build(snapshot)
        return index


def resolve_searches(events: Sequence[AnyEvent], index: Callable[[], SearchIndex]) -> list[AnyEvent]:
    """The events with every search's query resolved; the index is only asked for if there is one."""
    if not any(isinstance(event, SearchEvent) for event in events):
        return list(events)
    searchable = index()
    return [
        event.resolved(searchable.resolve(event.query)) if isinstance(event, SearchEvent) else event
        for event in events
    ]
