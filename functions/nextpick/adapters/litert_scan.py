"""A version's explore scan (`explore_scan.tflite`, docs/ranking-1m.md) behind one LiteRT interpreter,
built once per version per container, beside the model's own."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from nextpick.adapters.model_registry import EXPLORE_SCAN_SIGNATURES
from nextpick.domain.explore_scan import ScanAnswer
from nextpick.errors import ModelIntegrityError


class LiteRTExploreScan:
    """The `scan` and `normaliser` signatures of docs/model-contract.md, usable as the domain's
    `ExploreScan`. Construction checks the signatures' shapes against the model (`num_items`,
    `query_dim`) and runs both once: a scan that loads but cannot answer never reaches a request."""

    def __init__(self, body: bytes, num_items: int, query_dim: int | None = None) -> None:
        try:
            # One thread: the int8 kernel with LiteRT's default thread count took 5.3 ms per scan at 1M
            # items against 4.3 ms with one (interleaved, 400 calls each, on 2 shared cores); a 1M-item
            # function at one vCPU has no second core to give it anyway.
            self._interpreter = Interpreter(model_content=body, num_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise ModelIntegrityError(f"explore scan does not load in LiteRT: {exc}") from exc
        self.num_items = num_items
        try:
            signatures = self._interpreter.get_signature_list()
            if set(signatures) != set(EXPLORE_SCAN_SIGNATURES):
                raise ValueError(f"signatures {sorted(signatures)}, not {list(EXPLORE_SCAN_SIGNATURES)}")
            self._scan = self._interpreter.get_signature_runner("scan")
            self._normaliser = self._interpreter.get_signature_runner("normaliser")
            self.query_dim = int(self._scan.get_input_details()["query"]["shape"][0])
            outputs = self._scan.get_output_details()
            self.size = int(outputs["items"]["shape"][0])
            if query_dim is not None and self.query_dim != query_dim:
                raise ValueError(f"query of {self.query_dim}, the model's has {query_dim}")
            if self._normaliser.get_input_details()["query"]["shape"].tolist() != [self.query_dim]:
                raise ValueError("normaliser takes scan's query")
        except (KeyError, IndexError, ValueError) as exc:
            raise ModelIntegrityError(f"explore scan signatures do not match the contract: {exc}") from exc
        # One interpreter, one request at a time (the local stack serves requests on threads).
        self._lock = threading.Lock()
        self._check_runs()

    def candidates(self, query: np.ndarray) -> ScanAnswer:
        return self._answer(self._scan, query)

    def sample(self, query: np.ndarray) -> ScanAnswer:
        return self._answer(self._normaliser, query)

    def _answer(self, runner: Any, query: np.ndarray) -> ScanAnswer:
        with self._lock:
            out = runner(query=np.asarray(query, dtype=np.float32))
        return _answer_of(out)

    def _check_runs(self) -> None:
        query = np.zeros(self.query_dim, np.float32)
        query[-1] = 1.0  # the bias column alone: every item scores its popularity
        try:
            outputs = [runner(query=query) for runner in (self._scan, self._normaliser)]
            built_for = {int(out["num_items"]) for out in outputs}
            answers = [_answer_of(out) for out in outputs]
        except (KeyError, ValueError, RuntimeError) as exc:
            raise ModelIntegrityError(f"explore scan does not run: {exc!r}") from exc
        if built_for != {self.num_items}:
            # A scan of another vocabulary (an older version's, carried over by mistake) would never
            # find the items it lacks.
            raise ModelIntegrityError(
                f"explore scan was built for {sorted(built_for)} items, not {self.num_items}"
            )
        for answer in answers:
            items = answer.items
            if (
                items.shape != (self.size,)
                or items.min(initial=1) < 1
                or items.max(initial=1) >= self.num_items
            ):
                raise ModelIntegrityError(f"explore scan answers items outside 1 .. {self.num_items - 1}")
            if len(np.unique(items)) != len(items) or not np.isfinite([answer.weight, answer.log_rest]).all():
                raise ModelIntegrityError("explore scan answers a repeated item or a non-finite normaliser")


def _answer_of(out: dict[str, Any]) -> ScanAnswer:
    return ScanAnswer(np.array(out["items"], dtype=np.int64), float(out["weight"]), float(out["log_rest"]))
