"""Prefect events for drift alerts: ``divtransforms.drift.warning|critical|recovered``.

Resource: the feature (``prefect.resource.id = divtransforms.feature.<name>``), related: the
reference profile; payload: the alert and its record summary; id: uuid5 of the dedup key, so the
server drops an event that a retried run emits again. Automations (``divmon alerts install``) match
on these names.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from flows.alerts.outbox import ALERT_SUMMARY_FIELDS

EVENT_PREFIX = "divtransforms.drift"


def feature_resource_id(feature: str) -> str:
    return f"divtransforms.feature.{feature}"


def emit_alert_event(entry: Mapping[str, Any], monitor: str) -> bool:
    """Emit the event of one alert-log entry; returns whether an events client took it."""
    from prefect.events import emit_event

    event = emit_event(
        event=f"{EVENT_PREFIX}.{entry['severity']}",
        resource={
            "prefect.resource.id": feature_resource_id(entry["feature"]),
            "prefect.resource.name": entry["feature"],
            "divtransforms.monitor": monitor,
        },
        related=[
            {
                "prefect.resource.id": f"divtransforms.beam.reference.{entry['reference_id']}",
                "prefect.resource.role": "reference",
            }
        ],
        payload={k: entry.get(k) for k in ALERT_SUMMARY_FIELDS},
        id=uuid.UUID(entry["event_id"]),
    )
    return event is not None
