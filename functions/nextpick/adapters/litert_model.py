"""The LiteRT side of the model contract: one interpreter per model version, per container."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from nextpick.adapters.model_registry import (
    EXPLAIN_SIGNATURE,
    RANK_QUERY_SIGNATURE,
    REQUIRED_SIGNATURES,
    SCORE_ITEMS_SIGNATURE,
    SIMILAR_SIGNATURE,
    check_manifest,
)
from nextpick.domain.candidates import ExploreIndex, ExploreQuery
from nextpick.domain.explore_scan import ExploreScan
from nextpick.domain.together import PartnerTable
from nextpick.errors import ModelIntegrityError, ModelUnavailable


class ContractRunner:
    """The signatures of docs/model-contract.md behind one LiteRT interpreter (no manifest): `update` and
    `rank`, and `similar` when the model has it (`similar()` answers None otherwise).

    Serving wraps it with the manifest (`LiteRTModel`); training scores exported bytes with it, so
    evaluation runs exactly the code serving runs."""

    def __init__(self, model_bytes: bytes) -> None:
        try:
            self._interpreter = Interpreter(model_content=model_bytes)
        except (ValueError, RuntimeError) as exc:  # LiteRT's words for "not a model it can build"
            raise ModelIntegrityError(f"model bytes do not load in LiteRT: {exc}") from exc
        signatures = self._interpreter.get_signature_list()
        if not set(REQUIRED_SIGNATURES) <= set(signatures):
            raise ModelUnavailable(f"model lacks the update/rank signatures: {sorted(signatures)}")
        try:
            self._update = self._interpreter.get_signature_runner("update")
            self._rank = self._interpreter.get_signature_runner("rank")
            rank_inputs = self._rank.get_input_details()
            self.state_dim = int(self._update.get_input_details()["state"]["shape"][0])
            self.num_items = int(rank_inputs["exclude"]["shape"][0])
            # Contract v2 models also take the shopper's item history; v1 models (still served until
            # none is live) take the state alone. history_slots = 0 means "v1".
            if "history_items" in rank_inputs:
                self.history_slots = int(rank_inputs["history_items"]["shape"][0])
                self.history_features = int(rank_inputs["history_features"]["shape"][1])
            else:
                self.history_slots, self.history_features = 0, 0
            # Built once per model, like the other two runners: a request only fills its inputs.
            self._similar = None
            if SIMILAR_SIGNATURE in signatures:
                self._similar = self._interpreter.get_signature_runner(SIMILAR_SIGNATURE)
                similar_inputs = self._similar.get_input_details()
                if list(similar_inputs["exclude"]["shape"]) != [self.num_items] or len(
                    similar_inputs["item"]["shape"]
                ):
                    raise ValueError("similar takes item [] and exclude [num_items]")
            self._explain, self.recent_steps = self._explain_runner(signatures)
            self._large_catalog_runners(signatures)
        except (KeyError, IndexError, ValueError) as exc:  # a signature with other inputs than the contract's
            raise ModelIntegrityError(f"model signatures do not match the contract: {exc!r}") from exc
        # A LiteRT interpreter is not thread-safe; Lambda is single-threaded, the local stack is not.
        self._lock = threading.Lock()

    def _large_catalog_runners(self, signatures: dict[str, Any]) -> None:
        """The optional `rank_query` and `score_items` runners of the large-catalog paths (v2 only), and
        the width of rank_query's query (0 without it); ValueError when their inputs are not the contract's."""
        self._rank_query = None
        if RANK_QUERY_SIGNATURE in signatures and self.history_slots:
            self._rank_query = self._interpreter.get_signature_runner(RANK_QUERY_SIGNATURE)
            query_inputs = self._rank_query.get_input_details()
            if list(query_inputs["history_features"]["shape"]) != [
                self.history_slots,
                self.history_features,
            ] or list(query_inputs["state"]["shape"]) != [self.state_dim]:
                raise ValueError("rank_query takes rank's state and history inputs")
        # The width of rank_query's query (D + 1); 0 without rank_query.
        self.query_dim = 0
        if self._rank_query is not None:
            self.query_dim = int(self._rank_query.get_output_details()["query"]["shape"][0])
        self._score_items = None
        if SCORE_ITEMS_SIGNATURE in signatures and self._rank_query is not None:
            self._score_items = self._interpreter.get_signature_runner(SCORE_ITEMS_SIGNATURE)
            score_inputs = self._score_items.get_input_details()
            if score_inputs["query"]["shape"].tolist() != [self.query_dim] or list(
                score_inputs["items"]["shape_signature"]
            ) != [-1]:
                raise ValueError("score_items takes rank_query's query and items [-1]")

    def _explain_runner(self, signatures: dict[str, Any]) -> tuple[Any, int]:
        """The optional `explain` runner and its number of recent steps R; (None, 0) without it. Only a
        v2 model can have one: it explains a pick by the history slots `rank` took."""
        if EXPLAIN_SIGNATURE not in signatures:
            return None, 0
        runner = self._interpreter.get_signature_runner(EXPLAIN_SIGNATURE)
        inputs = runner.get_input_details()
        recent = [int(n) for n in inputs["recent_items"]["shape"]]

        def shape_of(name: str) -> list[int]:
            return [int(n) for n in inputs[name]["shape_signature"]]

        expected = {
            "state": [self.state_dim],
            # Any number of picks: -1.
            "history_items": [self.history_slots],
            "history_features": [self.history_slots, self.history_features],
            "recent_event_types": recent,
            "recent_strengths": recent,
            "picks": [-1],
        }
        if not self.history_slots or len(recent) != 1 or any(shape_of(n) != s for n, s in expected.items()):
            raise ValueError(f"explain takes {expected} (a v2 model only)")
        return runner, recent[0]

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        with self._lock:
            out = self._update(
                state=np.asarray(state, dtype=np.float32),
                item=np.int32(item),
                event_type=np.int32(event_type),
                strength=np.float32(strength),
            )
        return np.array(out["state"], dtype=np.float32)

    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of every item. A v2 model without a history given scores an empty history."""
        inputs = {
            "state": np.asarray(state, dtype=np.float32),
            "exclude": np.asarray(exclude, dtype=np.float32),
        }
        if self.history_slots:
            if history_items is None or history_features is None:
                history_items = np.zeros(self.history_slots, dtype=np.int32)
                history_features = np.zeros((self.history_slots, self.history_features), dtype=np.float32)
            inputs["history_items"] = np.asarray(history_items, dtype=np.int32)
            inputs["history_features"] = np.asarray(history_features, dtype=np.float32)
        with self._lock:
            out = self._rank(**inputs)
        return np.array(out["scores"], dtype=np.float32)

    def similar(self, item: int, exclude: np.ndarray) -> np.ndarray | None:
        """Cosine similarity of every item to `item` (excluded items, index 0 and the item itself
        <= -1e9); None when the model has no `similar` signature (published before it existed)."""
        if self._similar is None:
            return None
        with self._lock:
            out = self._similar(item=np.int32(item), exclude=np.asarray(exclude, dtype=np.float32))
        return np.array(out["scores"], dtype=np.float32)

    def explain(
        self,
        state: np.ndarray,
        history: tuple[np.ndarray, np.ndarray],
        recent: Sequence[tuple[int, int, float]],
        picks: Sequence[int],
    ) -> np.ndarray | None:
        """[len(picks), history_slots]: how much each history slot adds to each pick's score (its score
        minus its score without that slot, docs/explanations.md); None: the model has no `explain`.

        `recent` are the shopper's fold steps (vocabulary index, event code, strength), oldest first; the
        last `recent_steps` are passed, padded in front with item 0 (a step `update` skips)."""
        if self._explain is None:
            return None
        slot_items, features = np.asarray(history[0], np.int32), np.asarray(history[1], np.float32)
        # A shopper without a filled slot has nothing to cite: no call (it would score 65 catalogs).
        if not len(picks) or not np.any(features[:, -1] > 0.5):
            return np.zeros((len(picks), self.history_slots), np.float32)
        steps = list(recent)[-self.recent_steps :]
        pad = self.recent_steps - len(steps)
        items = np.zeros(self.recent_steps, np.int32)
        types = np.zeros(self.recent_steps, np.int32)
        strengths = np.zeros(self.recent_steps, np.float32)
        if steps:
            items[pad:], types[pad:], strengths[pad:] = zip(*steps, strict=True)
        with self._lock:
            out = self._explain(
                state=np.asarray(state, dtype=np.float32),
                history_items=slot_items,
                history_features=features,
                recent_items=items,
                recent_event_types=types,
                recent_strengths=strengths,
                picks=np.asarray(picks, dtype=np.int32),
            )
        return np.array(out["contributions"], dtype=np.float32)

    def explore_query(
        self, state: np.ndarray, history_items: np.ndarray | None, history_features: np.ndarray | None
    ) -> ExploreQuery | None:
        """`rank`'s per-shopper parts (the `rank_query` signature); None when the model has none."""
        if self._rank_query is None:
            return None
        if history_items is None or history_features is None:
            history_items = np.zeros(self.history_slots, dtype=np.int32)
            history_features = np.zeros((self.history_slots, self.history_features), dtype=np.float32)
        items = np.asarray(history_items, dtype=np.int32)
        features = np.asarray(history_features, dtype=np.float32)
        with self._lock:
            out = self._rank_query(
                state=np.asarray(state, dtype=np.float32), history_items=items, history_features=features
            )
        return ExploreQuery(
            query=np.array(out["query"], dtype=np.float32),
            history_items=items.astype(np.int64),
            history_scores=np.array(out["history_scores"], dtype=np.float32),
            explore_offset=float(out["explore_offset"]),
            present=features[:, -1] > 0.5,
        )

    @property
    def has_score_items(self) -> bool:
        return self._score_items is not None

    def score_items(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The exact explore logits query . V[i] + B[i] of vocabulary indices `items` (the `score_items`
        signature); ModelUnavailable when the model has none (callers check `has_score_items`)."""
        if self._score_items is None:
            raise ModelUnavailable("model has no score_items signature")
        with self._lock:
            out = self._score_items(
                query=np.asarray(query, dtype=np.float32), items=np.asarray(items, dtype=np.int32)
            )
        return np.array(out["logits"], dtype=np.float32)

    def check_runs(self) -> None:
        """Run every signature once (a cold-start state and one event, ~1 ms) and check their outputs'
        shapes; raise ModelIntegrityError otherwise. Publishing and serving both call it before a
        model goes live, so a model that builds but cannot run never reaches a request."""
        first = min(1, self.num_items - 1)
        try:
            state = self.update(np.zeros(self.state_dim, np.float32), first, 0, 1.0)
            scores = self.rank(state, np.zeros(self.num_items, np.float32))
            similar = self.similar(first, np.zeros(self.num_items, np.float32))
            if self._explain is not None:
                slot_items = np.zeros(self.history_slots, np.int32)
                features = np.zeros((self.history_slots, self.history_features), np.float32)
                slot_items[0], features[0, -1] = first, 1.0  # one filled slot: the signature runs
                explained = self.explain(state, (slot_items, features), [(first, 0, 1.0)], [first])
                if explained is None or explained.shape != (1, self.history_slots):
                    raise ValueError(f"explain answers shape {getattr(explained, 'shape', None)}")
            explore = self.explore_query(state, None, None)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ModelIntegrityError(f"model signatures do not run: {exc!r}") from exc
        outputs = [scores] if similar is None else [scores, similar]
        if state.shape != (self.state_dim,) or any(out.shape != (self.num_items,) for out in outputs):
            raise ModelIntegrityError(
                f"model outputs have shapes {state.shape} and {[out.shape for out in outputs]}, "
                f"not ({self.state_dim},) and ({self.num_items},)"
            )
        if explore is not None and (
            explore.query.ndim != 1 or explore.history_scores.shape != (self.history_slots,)
        ):
            raise ModelIntegrityError("model rank_query outputs do not have the contract's shapes")
        if explore is not None and not np.isfinite(explore.query).all():
            raise ModelIntegrityError("model rank_query outputs a non-finite query for a cold-start user")
        if explore is not None and self._score_items is not None:
            logits = self.score_items(explore.query, np.asarray([first], np.int32))
            if logits.shape != (1,) or not np.isfinite(logits).all():
                raise ModelIntegrityError("model score_items does not answer one finite logit per item")
        if any(np.isnan(out).any() for out in (state, *outputs)):
            raise ModelIntegrityError("model outputs NaN for a cold-start user or an item's neighbours")


class LiteRTModel(ContractRunner):
    """A loaded `.tflite` and its manifest, usable as the domain's RankingModel."""

    def __init__(self, model_bytes: bytes, manifest: dict[str, Any]) -> None:
        check_manifest(manifest)
        self._version = str(manifest["version"])
        super().__init__(model_bytes)
        self._items: tuple[str | None, ...] = tuple(manifest["items"])
        self._index = {item_id: index for index, item_id in enumerate(self._items) if item_id is not None}
        if (
            self.num_items != len(self._items)
            or manifest.get("state_dim", self.state_dim) != self.state_dim
            or manifest.get("history_slots", 0) != self.history_slots
        ):
            raise ModelUnavailable(f"model {self._version} does not match its manifest's dimensions")
        self.manifest = manifest
        # Set by the model source once the version's bought_together.npz is verified; None: it has none.
        self.partner_table: PartnerTable | None = None
        # Set by the model source once the version's explore_index.npz is verified (docs/ranking-1m.md).
        self.explore_index: ExploreIndex | None = None
        # Set by the model source once the version's explore_scan.tflite is loaded and run (the same doc).
        self.explore_scan: ExploreScan | None = None
        self._trending = tuple(
            (index, float(score))
            for item_id, score in manifest.get("trending", ())
            if (index := self._index.get(str(item_id), 0)) > 0
        )

    @property
    def trending(self) -> tuple[tuple[int, float], ...]:
        return self._trending

    @property
    def version(self) -> str:
        return self._version

    @property
    def items(self) -> Sequence[str | None]:
        return self._items

    def item_index(self, item_id: str) -> int:
        return self._index.get(item_id, 0)
