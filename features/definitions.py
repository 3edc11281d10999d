"""The Feast feature repository: declarations only.

One entity (``customer``), one Parquet source and one feature view per entry
of ``names.views(actions)``, the packed online view ``customer_vector``
(written by ``nextbest features materialize`` and by real-time pushes), the
on-demand view ``request_context`` and one feature service (``nba_v1`` by
default): the contract that training and serving read features through.

:func:`feast_objects` declares them for a feature data folder and an action
catalogue (the pressure view has one cooldown feature per action);
``features/store.py`` registers them with ``nextbest features apply``, which
also writes a ``feature_store.yaml`` beside the registry so the Feast CLI can
inspect it (``feast -c data/features feature-services list``).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Sequence

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bytes, Float32, Int64, String, UnixTimestamp

from features.names import CONTEXT, CONTEXT_REQUEST, customer_features, views as view_features
from nextbest.vocabulary import ENTITY_KEY, TIMESTAMP_FIELD

PROJECT = "nextbest"
VECTOR_VIEW = "customer_vector"
VECTOR_FIELD = "vector"
VECTOR_PUSH_SOURCE = "customer_vector_push"
CONTEXT_VIEW = "request_context"
REQUEST_SOURCE = "decision_request"
SERVICE_TAG = "feature_service"
HASH_TAG = "feature_list_sha1"


def feature_list_hash(names: tuple[str, ...] | list[str]) -> str:
    """Stable fingerprint of an ordered feature list (tags the packed vector view)."""
    return hashlib.sha1(",".join(names).encode()).hexdigest()[:16]


def feast_objects(features_dir: Path | str, feature_service: str, actions: Sequence[str]) -> dict:
    """All Feast objects of the repository, with sources under ``features_dir``, for a catalogue of ``actions``."""
    fd = Path(features_dir).resolve()
    by_view = view_features(actions)
    stored = customer_features(actions)

    customer = Entity(
        name="customer",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.STRING,
        description="a customer of the input data contract",
    )
    views: dict[str, FeatureView] = {}
    sources: dict[str, object] = {}
    for view, feats in by_view.items():
        src = FileSource(
            name=f"{view}_source",
            path=str(fd / f"{view}.parquet"),
            timestamp_field=TIMESTAMP_FIELD,
            description=f"point-in-time snapshots of {view}, written by the feature pipeline",
        )
        schema = [Field(name=f, dtype=Float32) for f in feats]
        if view == "customer_profile":
            schema.append(Field(name="timezone", dtype=String))
        sources[view] = src
        views[view] = FeatureView(
            name=view,
            entities=[customer],
            ttl=timedelta(0),  # no expiry: a snapshot holds until the next one
            schema=schema,
            source=src,
            online=True,
            tags={"layer": "snapshot"},
        )

    vector_push = PushSource(
        name=VECTOR_PUSH_SOURCE,
        batch_source=FileSource(
            name=f"{VECTOR_VIEW}_source",
            path=str(fd / f"{VECTOR_VIEW}.parquet"),
            timestamp_field=TIMESTAMP_FIELD,
        ),
        description="packed latest features of a customer (bulk materialize and real-time updates)",
    )
    vector_view = FeatureView(
        name=VECTOR_VIEW,
        entities=[customer],
        ttl=timedelta(0),
        schema=[Field(name=VECTOR_FIELD, dtype=Bytes)],
        source=vector_push,
        online=True,
        description=(
            "float32 little-endian vector of the customer features of the feature service, in its order, "
            "followed by the customer's timezone in UTF-8"
        ),
        tags={
            SERVICE_TAG: feature_service,
            HASH_TAG: feature_list_hash(stored),
            "n_features": str(len(stored)),
            "layout": "float32le[n_features] + utf8 timezone",
        },
    )

    decision_request = RequestSource(
        name=REQUEST_SOURCE,
        schema=[
            Field(name="trigger_timestamp", dtype=UnixTimestamp),
            Field(name="trigger_event", dtype=String),
            Field(name="trigger_channel", dtype=String),
            Field(name="near_store", dtype=Int64),
            Field(name="weather", dtype=String),
        ],
        description="fields of the decision request (the trigger and its context)",
    )
    assert tuple(f.name for f in decision_request.schema) == CONTEXT_REQUEST

    @on_demand_feature_view(
        name=CONTEXT_VIEW,
        sources=[decision_request, views["customer_profile"][["timezone"]]],
        schema=[Field(name=f, dtype=Float32) for f in CONTEXT],
        mode="python",
        description="request context in the customer's timezone (features/context.py: compute_context)",
    )
    def request_context(inputs: dict) -> dict:
        from features.context import context_from_inputs

        return context_from_inputs(inputs)

    service = FeatureService(
        name=feature_service,
        # the profile's timezone string feeds request_context; the model features are all float32
        features=[
            *(views[v][list(by_view[v])] if v == "customer_profile" else views[v] for v in by_view),
            request_context,
        ],
        description="next-best-action features: the contract between training and serving",
    )
    return {
        "entity": customer,
        "sources": sources,
        "views": views,
        "vector_view": vector_view,
        "vector_push": vector_push,
        "request_source": decision_request,
        "context_view": request_context,
        "feature_service": service,
    }
