"""The composition root: builds the service and its adapters once per container, lazily."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from nextpick.adapters.artifact_catalog import ArtifactCatalog
from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
from nextpick.adapters.dynamodb_trending import DynamoDbTrending
from nextpick.adapters.firehose_impressions import FirehoseImpressionLog
from nextpick.adapters.s3_catalog_artifact import CatalogArtifact
from nextpick.adapters.s3_event_log import S3EventLog
from nextpick.adapters.s3_model_source import S3ModelSource
from nextpick.adapters.s3_rule_sets import S3RuleSetStore
from nextpick.adapters.secrets_manager import SecretsManagerMasterKeys
from nextpick.adapters.shadow_metrics import PowertoolsShadowReport
from nextpick.adapters.sqs_rejected_records import SqsRejectedRecords
from nextpick.domain.compaction import LogCompaction
from nextpick.domain.credentials import Authenticator
from nextpick.domain.privacy import PrivacyRequests
from nextpick.domain.ranking import MaskCache
from nextpick.domain.requests import RequestLimits
from nextpick.domain.rule_sets import RuleSets
from nextpick.domain.service import Recommender, ServiceConfig
from nextpick.domain.shadow import ShadowScoring
from nextpick.domain.similar_items import SimilarItems
from nextpick.domain.state import StateLimits
from nextpick.domain.together_service import TogetherService
from nextpick.domain.trending import LiveTrending, TrendingWindow
from nextpick.settings import get_settings


@cache
def model_source() -> S3ModelSource:
    settings = get_settings()
    return S3ModelSource(settings.model_bucket_name, settings.model_prefix, settings.model_refresh_seconds)


@cache
def catalog() -> ArtifactCatalog:
    """The catalog serving masks with: the availability artifact in S3, never a table scan while it is
    readable (docs/catalog-artifact.md); admin writes go to the items table."""
    settings = get_settings()
    return ArtifactCatalog(
        CatalogArtifact(settings.model_bucket_name, settings.catalog_artifact_prefix),
        DynamoDbCatalog(settings.items_table_name, settings.catalog_refresh_seconds),
        refresh_seconds=settings.catalog_refresh_seconds,
        max_stale_seconds=settings.catalog_max_stale_seconds,
    )


def _state_limits() -> StateLimits:
    """The bounds of a shopper's state item, the same for every writer of the state table."""
    settings = get_settings()
    return StateLimits(
        recent_events=settings.recent_events_limit,
        processed_ids=settings.processed_ids_limit,
        purchased_items=settings.purchased_items_limit,
    )


@cache
def state_repository() -> DynamoDbStateRepository:
    """The state table, one per container: the event path, the cart and privacy requests share its
    client (one boto3 client to build on a cold start, not one per service)."""
    return DynamoDbStateRepository(get_settings().state_table_name, _state_limits())


@cache
def recommender() -> Recommender:
    settings = get_settings()
    limits = _state_limits()
    config = ServiceConfig(
        limits=limits,
        max_write_attempts=settings.max_write_attempts,
        exclude_purchased_default=settings.exclude_purchased_default,
        max_future_skew=timedelta(seconds=settings.max_future_skew_seconds),
    )
    return Recommender(
        states=state_repository(),
        models=model_source(),
        catalog=catalog(),
        config=config,
        trending=live_trending(),
        masks=candidate_masks(),
        shadow=shadow_scoring(),
    )


@cache
@cache
def shadow_scoring() -> ShadowScoring:
    """The shadow model named by the pointer, if any, scored on a sample of the shoppers' answers and
    logged as impressions, never served (docs/variants.md)."""
    return ShadowScoring(
        models=model_source(),
        impressions=impression_log(),  # the served answers' log: one stream, one report
        report=PowertoolsShadowReport(),
        clock=lambda: datetime.now(UTC),
    )


@cache
def live_trending() -> LiveTrending:
    """GET /trending (docs/trending.md): the hour buckets, masked with the same catalog snapshot."""
    settings = get_settings()
    return LiveTrending(
        counts=DynamoDbTrending(settings.trending_table_name, settings.trending_max_items_per_bucket),
        catalog=catalog(),
        window=TrendingWindow(settings.trending_window_hours, settings.trending_half_life_hours),
        refresh_seconds=settings.trending_refresh_seconds,
    )


@cache
def similar_items() -> SimilarItems:
    """GET /items/{item_id}/similar (docs/similar.md): the live model, the catalog, live trending."""
    return SimilarItems(
        models=model_source(), catalog=catalog(), trending=live_trending(), masks=candidate_masks()
    )


@cache
def candidate_masks() -> MaskCache:
    """The stock, category and rule columns of the live (model, catalog snapshot), built once per
    container and shared by recommendations, similar items, bought together and the cart: three
    copies would cost 3x the build and the memory (22 MiB of columns at 100k items, docs/rules.md)."""
    return MaskCache()


@cache
def together() -> TogetherService:
    """Bought together and cart completion (docs/bought-together.md): the same state table, model,
    catalog and live trending as the rest of serving."""
    settings = get_settings()
    config = ServiceConfig(
        limits=_state_limits(), exclude_purchased_default=settings.exclude_purchased_default
    )
    return TogetherService(
        states=state_repository(),
        models=model_source(),
        catalog=catalog(),
        trending=live_trending(),
        config=config,
        masks=candidate_masks(),
    )


@cache
def impression_log() -> FirehoseImpressionLog:
    """Every answer's impression (docs/attribution.md): the event log's Firehose stream, one client
    per container."""
    return FirehoseImpressionLog(get_settings().event_log_stream_name)


@cache
def rule_sets() -> RuleSets:
    """Named rule sets in the model bucket, cached per container (docs/rules.md)."""
    settings = get_settings()
    return RuleSets(S3RuleSetStore(settings.model_bucket_name, settings.rule_sets_refresh_seconds))


@cache
def request_limits() -> RequestLimits:
    """The limits every request is validated against, on the API and on the bus alike."""
    settings = get_settings()
    return RequestLimits(
        max_body_bytes=settings.max_body_bytes,
        max_batch_events=settings.max_batch_events,
        max_batch_log_bytes=settings.max_batch_log_bytes,
    )


@cache
def rejected_records() -> SqsRejectedRecords:
    """Where the Kinesis path parks records that are not valid events (docs/kinesis.md)."""
    return SqsRejectedRecords(get_settings().stream_rejects_queue_url)


# ------------------------------------------------------------------------------- privacy (issue 9)


@cache
def privacy_requests() -> PrivacyRequests:
    """Erasure and export on the state table (the same limits as the event path)."""
    settings = get_settings()
    return PrivacyRequests(
        states=state_repository(),
        compaction_schedule=settings.log_compaction_schedule,
        max_write_attempts=settings.max_write_attempts,
    )


@cache
def log_compaction() -> LogCompaction:
    settings = get_settings()
    return LogCompaction(
        S3EventLog(settings.model_bucket_name), retention=timedelta(days=settings.event_log_retention_days)
    )


@cache
def authenticator() -> Authenticator:
    settings = get_settings()
    masters = SecretsManagerMasterKeys(settings.auth_secret_id, settings.auth_secret_refresh_seconds)
    return Authenticator(masters, settings.shopper_token_max_seconds)


def reset() -> None:
    """Forget every cached object (tests, and the local stack when it re-reads its settings)."""
    for factory in (
        model_source,
        catalog,
        recommender,
        shadow_scoring,
        live_trending,
        similar_items,
        together,
        candidate_masks,
        state_repository,
        rule_sets,
        impression_log,
        request_limits,
        rejected_records,
        privacy_requests,
        log_compaction,
        authenticator,
        get_settings,
    ):
        factory.cache_clear()
