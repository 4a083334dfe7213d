"""Finds the live model through the S3 pointer and keeps it loaded, keyed by version.

The pointer (`models/current.json`) is read at most once per `refresh_seconds`, conditionally on its
ETag, so a warm container costs one cheap S3 request a minute and notices a retrain or a rollback
within that interval, without a redeploy. Keys, formats and checksums are the model registry's
(`nextpick.adapters.model_registry`).

A model fault never takes ranking down (docs/design.md, "Model faults"):
* a pointer, manifest or model that cannot be read, parsed, verified or run leaves the loaded model in
  place (a warm container keeps answering with it, marked `fallback`);
* a container with nothing loaded falls back to the newest earlier version in the pointer history
  (`models/history/`) that loads and runs, marked `fallback`; if none does, answers carry no
  recommendations and say `unavailable`, never a 5xx;
* the pointer's ETag is remembered only once its outcome is final: its model loaded, or it failed in a
  way that cannot heal (bytes, manifest or signatures are immutable per version). After a transient
  S3 error the same pointer is tried again at the next refresh.

An A/B experiment (docs/variants.md) is part of the same pointer: every version it names (variants and
shadow) is loaded once per version per container, at the refresh that first sees it, and `assign`
picks a shopper's model by the hash of their id. A variant whose model fails to load is served by the
control (its shoppers' answers say `control`), counted as `VariantFallback` and logged with the variant's
name and version, never a shopper's id; a shadow that fails to load is simply not scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from nextpick.adapters import LazyClient, model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.variants_pointer import read_variants
from nextpick.domain.impressions import CONTROL_VARIANT
from nextpick.domain.ports import ModelStatus
from nextpick.domain.variants import Assignment, ShadowModel, VariantConfig
from nextpick.errors import ModelIntegrityError, ModelUnavailable, NextpickError, NotFound, StorageUnavailable

logger = Logger(child=True)
# Powertools metrics instances share one metric set: the handler that runs this refresh flushes them.
metrics = Metrics(namespace="Nextpick")

# Versions of the history a cold container tries before it gives up until the next refresh: each try
# downloads a model, and three bad versions in a row mean something no fallback will fix.
FALLBACK_ATTEMPTS = 3


class S3ModelSource:
    def __init__(
        self,
        bucket: str,
        prefix: str = registry.DEFAULT_PREFIX,
        refresh_seconds: float = 60.0,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._refresh_seconds = refresh_seconds
        self._client = LazyClient("s3", client)
        self._clock = clock
        self._model: LiteRTModel | None = None
        self._status = ModelStatus.NONE
        # The ETag of the last pointer whose outcome is final (see the module docstring).
        self._settled_etag: str | None = None
        # The version the pointer named when last read: a fallback never picks it again.
        self._pointer_version: str | None = None
        self._checked_at: float | None = None
        # The pointer's experiment (None: a plain pointer) and the models of its non-control versions
        # that loaded, by version; a version missing here is served by the control.
        self._experiment: VariantConfig | None = None
        self._variant_models: dict[str, LiteRTModel] = {}

    def current(self) -> LiteRTModel | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._refresh_seconds:
            self._checked_at = now
            try:
                self._refresh()
            except NextpickError:  # ModelUnavailable (incl. integrity), NotFound, StorageUnavailable
                logger.exception("model refresh failed; keeping version %s", self.loaded_version)
                if self._model is None:
                    self._status = ModelStatus.UNAVAILABLE
            if self._model is None and self._status is not ModelStatus.NONE:
                self._fall_back()
            self._emit_metrics()
        return self._model

    def assign(self, user_id: str) -> Assignment:
        """The shopper's variant and its model (the control when no experiment runs, or when the
        variant's model did not load)."""
        control = self.current()
        experiment = self._experiment
        if experiment is None or not experiment.is_experiment:
            return Assignment(CONTROL_VARIANT, control)
        variant = experiment.assign(user_id)
        if variant.name == CONTROL_VARIANT:
            return Assignment(CONTROL_VARIANT, control)
        model = self._model_of(variant.version, experiment)
        if model is None:
            return Assignment(CONTROL_VARIANT, control)
        return Assignment(variant.name, model)

    def _model_of(self, version: str, experiment: VariantConfig) -> LiteRTModel | None:
        if version == experiment.control.version:  # an A/A test: the control's own model
            return self._model
        return self._variant_models.get(version)

    def shadow(self) -> ShadowModel | None:
        """The loaded shadow, as of the refresh the request's `assign` (or `current`) made."""
        experiment = self._experiment
        if experiment is None or experiment.shadow is None:
            return None
        model = self._model_of(experiment.shadow.version, experiment)
        return ShadowModel(experiment.shadow, model) if model is not None else None

    @property
    def experiment(self) -> VariantConfig | None:
        return self._experiment

    @property
    def status(self) -> ModelStatus:
        return self._status

    @property
    def loaded_version(self) -> str | None:
        return self._model.version if self._model is not None else None

    def _refresh(self) -> None:
        try:
            read = registry.read_pointer(
                self._client.get(), self._bucket, self._prefix, etag=self._settled_etag
            )
        except ModelIntegrityError:
            # The live pointer is unreadable: whatever is loaded is not what it names.
            self._pointer_version = None
            if self._model is not None:
                self._status = ModelStatus.FALLBACK
            raise
        if read.not_modified:
            return
        if read.pointer is None:  # nothing published yet (the API answers with empty lists)
            if self._model is None:
                self._status = ModelStatus.NONE
            return
        version = str(read.pointer["version"])
        self._pointer_version = version
        settled = self._load_experiment(read.pointer)
        if version == self.loaded_version:
            self._status = ModelStatus.LIVE
        else:
            self._switch(read.pointer, read.etag if settled else None)
        if settled:
            self._settled_etag = read.etag

    def _switch(self, pointer: dict[str, Any], final_etag: str | None) -> None:
        """Load the pointer's control version and serve it; on failure keep the loaded model (marked
        fallback) and remember `final_etag` unless the failure is transient."""
        version = str(pointer["version"])
        try:
            model = self.load_version(pointer)
        except NextpickError as exc:
            if final_etag is not None and not isinstance(exc, StorageUnavailable):
                # A version's objects never change: fetching them again before the next publish is waste.
                self._settled_etag = final_etag
            if self._model is not None:
                self._status = ModelStatus.FALLBACK
            raise
        logger.info("model switched", extra={"from_version": self.loaded_version, "to_version": version})
        self._model, self._status = model, ModelStatus.LIVE

    def _load_experiment(self, pointer: dict[str, Any]) -> bool:
        """Apply the pointer's experiment: load every version it names beyond the control (kept if
        already loaded). Never raises: a version that fails is served by the control. Returns whether
        every outcome is final (False after a transient S3 error: retried at the next refresh)."""
        try:
            experiment, refs = read_variants(pointer)
        except ModelIntegrityError:
            logger.exception("the pointer's experiment is malformed; serving the control alone")
            self._experiment, self._variant_models = None, {}
            return True
        settled, loaded = True, {}
        control_version = experiment.control.version
        named = [(v.name, v.version) for v in experiment.variants[1:] if v.weight > 0]
        if experiment.shadow is not None:
            named.append((experiment.shadow.name, experiment.shadow.version))
        for name, version in named:
            if version == control_version or version in loaded:
                continue
            model = self._variant_models.get(version)
            if model is None:
                try:
                    model = self.load_version(refs[version])
                except NextpickError as exc:
                    settled = settled and not isinstance(exc, StorageUnavailable)
                    logger.exception(
                        "a variant's model failed to load; the control serves it",
                        extra={"variant": name, "variant_version": version},
                    )
                    continue
            loaded[version] = model
        self._experiment, self._variant_models = experiment, loaded
        return settled

    def unloaded_variants(self) -> list[str]:
        """The names of the experiment's variants (and shadow) whose model is not loaded."""
        experiment = self._experiment
        if experiment is None:
            return []
        missing = [
            v.name
            for v in experiment.variants[1:]
            if v.weight > 0
            and v.version != experiment.control.version
            and v.version not in self._variant_models
        ]
        shadow = experiment.shadow
        if shadow is not None and self._model_of(shadow.version, experiment) is None:
            missing.append(shadow.name)
        return missing

    def _fall_back(self) -> None:
        """Load the newest earlier version of the pointer history that loads and runs."""
        s3 = self._client.get()
        try:
            history = registry.pointer_history(s3, self._bucket, self._prefix)
            earlier = (p for p in history if p["version"] != self._pointer_version)
            for pointer in islice(earlier, FALLBACK_ATTEMPTS):
                try:
                    model = self.load_version(pointer)
                except (ModelUnavailable, NotFound):
                    logger.exception("fallback version %s is unusable too", pointer["version"])
                    continue
                logger.warning(
                    "serving a fallback model",
                    extra={"fallback_version": model.version, "pointer_version": self._pointer_version},
                )
                self._model, self._status = model, ModelStatus.FALLBACK
                return
        except StorageUnavailable:
            logger.exception("model history unreadable; no fallback until the next refresh")
        self._status = ModelStatus.UNAVAILABLE

    def load_version(self, pointer: dict[str, Any]) -> LiteRTModel:
        """The pointer's model, verified (checksums), built in LiteRT and run once on a cold-start state,
        with its bought-together table, explore index and explore scan if it has them."""
        manifest, model_bytes = registry.load_live(self._client.get(), self._bucket, pointer)
        try:
            model = LiteRTModel(model_bytes, manifest)
        except (TypeError, KeyError, ValueError) as exc:  # a manifest field of the wrong type
            raise ModelIntegrityError(f"model {pointer.get('version')!r} does not load: {exc!r}") from exc
        model.check_runs()
        # Bought together is part of the version: loaded (and verified) once per version per container,
        # here; a corrupt table refuses the whole version, so the previous one stays live.
        table = model_artifacts.load_partner_table(self._client.get(), self._bucket, self._prefix, manifest)
        model.partner_table = table
        # So is the large-catalog explore index (docs/ranking-1m.md); a corrupt one refuses the version.
        model.explore_index = model_artifacts.load_explore_index(
            self._client.get(), self._bucket, self._prefix, manifest
        )
        # And the explore scan, for catalogs the index refused; only a model that re-scores its candidates
        # (`score_items`) can use one.
        if model.has_score_items:
            model.explore_scan = model_artifacts.load_explore_scan(
                self._client.get(), self._bucket, self._prefix, manifest, model.query_dim
            )
        return model

    def _emit_metrics(self) -> None:
        """Once per refresh: whether this container serves a fallback, and how old its model is."""
        degraded = self._status in (ModelStatus.FALLBACK, ModelStatus.UNAVAILABLE)
        metrics.add_metric(name="ModelFallback", unit=MetricUnit.Count, value=int(degraded))
        if self._experiment is not None and (self._experiment.is_experiment or self._experiment.shadow):
            # Variants (and a shadow) whose model is not loaded: their shoppers get the control.
            metrics.add_metric(
                name="VariantFallback", unit=MetricUnit.Count, value=len(self.unloaded_variants())
            )
        if self._model is None:
            return
        try:
            created = datetime.fromisoformat(str(self._model.manifest.get("created_at")))
        except ValueError:
            return
        age = (datetime.now(UTC) - created).total_seconds()
        metrics.add_metric(name="ModelAgeSeconds", unit=MetricUnit.Seconds, value=max(0.0, age))
