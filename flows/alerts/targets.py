"""The alert targets: one registry (:data:`TARGETS`, ``[[notify]] type`` -> :class:`AlertTarget`),
each target's payload and its delivery.

Every target is sent by a function of one signature (:class:`Sender`) from the one renderer,
:class:`flows.alerts.messages.Message`; each ``*_payload`` function builds exactly the JSON the
target's API documents, each ``send_*`` posts it and raises on an error status so that the alert
stays in the outbox (``flows.alerts.outbox.deliver_outstanding``).

- Webhook: a JSON POST ``{"subject", "body"}`` (:meth:`Message.plain`) through
  :mod:`flows.alerts.transport`, which keeps the whole attempt's deadline itself (closing the
  connection) and sends the ``Idempotency-Key`` and ``X-Divtransforms-Dedup-Key`` headers.
- Notification block: any saved Prefect notification block (``Block.load("type-slug/name")``),
  sent the same subject and body.
- Slack incoming webhook: ``{"text", "blocks"}`` (Block Kit), ``text`` as the notification
  fallback.
- E-mail through SendGrid's v3 ``mail/send``: a ``text/plain`` and a ``text/html`` part.
- PagerDuty Events API v2 (``/v2/enqueue``): ``trigger`` for warning/critical, ``resolve`` for
  recovered, with the *incident key* as ``dedup_key``.
- Prometheus Alertmanager (``POST /api/v2/alerts``): a firing alert (``endsAt`` =
  ``ttl_hours`` ahead, so an incident that is never resolved still expires) and, for recovered,
  the same label set with ``endsAt`` now, which resolves it.

The incident key (:func:`incident_key`) is the dedup key of the alert that opened the incident:
an escalation from warning to critical updates the same PagerDuty incident, and the ``recovered``
alert that closes it carries the same key, so it resolves exactly what it opened. An alert is
never sent to these two targets before the earlier alerts of its incident reached them
(:func:`require_in_order`): a resolve that overtook its trigger would leave the incident open.

URLs and keys are resolved when a message is sent and are never logged (``outbox.safe_error``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from flows.alerts.messages import Message
from flows.alerts.secrets import resolve_secret, saved_block
from flows.config import MonitorConfig, NotifyConfig

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
SENDGRID_URL = "https://api.sendgrid.com/v3/mail/send"
ALERTNAME = "DataDrift"
_PD_SEVERITY = {
    "critical": "critical",
    "warning": "warning",
    "stale": "error",
    "persistent": "warning",
}
# Alerts that open (or escalate) an incident; ``recovered`` closes it. ``stale`` is the feed's
# (flows.monitor.freshness), on its own pseudo-feature, so it never mixes with a feature's drift.
# ``persistent`` (the sequential detector, kind ``persistent``) is an incident of its own: entries
# match on feature and kind.
_OPENING = ("warning", "critical", "stale", "persistent")


def incident_key(entries: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]) -> str:
    """The dedup key of the warning/critical alert that opened ``entry``'s incident.

    ``entries`` is the alert log in order. An opening alert with no incident open is its own
    incident; a later escalation and the ``recovered`` alert belong to the open one.
    """
    opened: str | None = None
    for e in entries:
        if e.get("dedup_key") == entry.get("dedup_key"):
            break
        if e.get("feature") != entry.get("feature") or e.get("kind") != entry.get("kind"):
            continue
        if e.get("severity") in _OPENING:
            opened = opened or e.get("dedup_key")
        elif e.get("severity") == "recovered":
            opened = None
    return opened or str(entry["dedup_key"])


def incident_severities(
    entries: Sequence[Mapping[str, Any]], entry: Mapping[str, Any], key: str
) -> list[str]:
    """The severities the incident ``key`` has fired with, up to ``entry`` (in log order)."""
    seen: list[str] = []
    for e in entries:
        if e.get("dedup_key") == entry.get("dedup_key"):
            break
        if (
            e.get("feature") == entry.get("feature")
            and e.get("kind") == entry.get("kind")
            and e.get("severity") in _OPENING
        ):
            if incident_key(entries, e) == key and e["severity"] not in seen:
                seen.append(e["severity"])
    return seen


class IncidentNotOpenedYet(RuntimeError):
    """An earlier alert of the same incident has not reached this target yet: sending this one
    first would resolve (or update) nothing and leave the incident open when the earlier one
    arrives. The alert stays in the outbox and follows it."""


def require_in_order(
    entries: Sequence[Mapping[str, Any]], entry: Mapping[str, Any], key: str, target: str
) -> None:
    """Raise :class:`IncidentNotOpenedYet` if an earlier alert of incident ``key`` is still
    undelivered to ``target``."""
    for e in entries:
        if e.get("dedup_key") == entry.get("dedup_key"):
            return
        if e.get("feature") != entry.get("feature") or incident_key(entries, e) != key:
            continue
        state = (e.get("deliveries") or {}).get(target)
        if state is not None and state.get("status") != "delivered":
            raise IncidentNotOpenedYet(
                f"{entry.get('dedup_key')} waits for {e.get('dedup_key')} to reach {target}"
            )


def pagerduty_dedup_key(key: str) -> str:
    """PagerDuty accepts at most 255 characters: longer keys become a stable digest."""
    if len(key) <= 255:
        return key
    return "divtransforms-sha256-" + hashlib.sha256(key.encode()).hexdigest()


def _iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- payloads


def slack_payload(message: Message) -> dict[str, Any]:
    return message.slack()


def sendgrid_payload(message: Message, sender: str, to: Sequence[str]) -> dict[str, Any]:
    return {
        "personalizations": [{"to": [{"email": addr} for addr in to]}],
        "from": {"email": sender, "name": "divtransforms"},
        "subject": message.subject,
        "content": [
            {"type": "text/plain", "value": message.text()},
            {"type": "text/html", "value": message.html()},
        ],
        "custom_args": {"divtransforms_dedup_key": str(message.context["dedup_key"])[:512]},
    }


def pagerduty_payload(message: Message, routing_key: str, key: str) -> dict[str, Any]:
    ctx = message.context
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": pagerduty_dedup_key(key),
    }
    if ctx["is_recovery"]:
        event["event_action"] = "resolve"
        return event
    event["event_action"] = "trigger"
    event["payload"] = {
        "summary": message.summary[:1024],
        "source": f"divtransforms/{ctx['monitor']}",
        "severity": _PD_SEVERITY.get(ctx["severity"], "warning"),
        "timestamp": ctx.get("created_at") or _iso_now(),
        "component": ctx["feature"],
        "group": ctx["monitor"],
        "class": "data drift",
        "custom_details": {
            k: ctx[k]
            for k in (
                "metric",
                "value",
                "warn",
                "critical",
                "p_value",
                "n",
                "window",
                "reference_id",
                "run_id",
                "reason",
                "dedup_key",
            )
        },
    }
    event["client"] = "divtransforms"
    if ctx["dashboard_url"]:
        event["client_url"] = ctx["dashboard_url"]
        event["links"] = [{"href": ctx["dashboard_url"], "text": "Drift dashboard"}]
    return event


def alertmanager_payload(
    message: Message,
    key: str,
    *,
    resolve_severities: Sequence[str] = (),
    extra_labels: Mapping[str, str] | None = None,
    ttl: timedelta = timedelta(hours=168),
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``postableAlerts``: the firing alert and/or the resolutions of ``resolve_severities``."""
    ctx = message.context
    now = now or datetime.now(UTC)
    base_labels = {
        **(extra_labels or {}),
        "alertname": ALERTNAME,
        "monitor": ctx["monitor"],
        "feature": ctx["feature"],
        "dedup_key": key,
    }
    annotations = {
        "summary": message.summary,
        "description": message.text(),
        "metric": str(ctx["metric"]),
        "value": str(ctx["value"]),
        "p_value": str(ctx["p_value"]),
        "n": str(ctx["n"]),
        "window": ctx["window"],
        "reference": str(ctx["reference_id"]),
    }
    if ctx["dashboard_url"]:
        annotations["dashboard"] = ctx["dashboard_url"]
    started = ctx.get("created_at") or now.isoformat()
    out = []
    for sev in resolve_severities:
        out.append(
            {
                "labels": {**base_labels, "severity": sev},
                "annotations": annotations,
                "startsAt": started,
                "endsAt": now.isoformat(),
                **({"generatorURL": ctx["dashboard_url"]} if ctx["dashboard_url"] else {}),
            }
        )
    if not ctx["is_recovery"]:
        out.append(
            {
                "labels": {**base_labels, "severity": ctx["severity"]},
                "annotations": annotations,
                "startsAt": started,
                "endsAt": (now + ttl).isoformat(),
                **({"generatorURL": ctx["dashboard_url"]} if ctx["dashboard_url"] else {}),
            }
        )
    return out


# ---------------------------------------------------------------------- delivery


class Sender(Protocol):
    """Sends one alert-log ``entry`` to the target ``cfg`` of monitor ``config``; raises on
    failure. ``timeout`` bounds the HTTP attempt (``None``: the target's own ``timeout``);
    ``test`` marks the message as a test (``divmon alerts test``); ``entries`` is the alert log
    in order, for the targets that follow an incident (read from ``config`` when ``None``)."""

    def __call__(
        self,
        config: MonitorConfig,
        cfg: NotifyConfig,
        entry: Mapping[str, Any],
        *,
        timeout: float | None = None,
        test: bool = False,
        entries: Sequence[Mapping[str, Any]] | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class AlertTarget:
    """One ``[[notify]] type``: its sender and how a delivery attempt is bounded.

    ``keeps_deadline``: the sender finishes within ``timeout`` itself (and closes its
    connection); otherwise the attempt runs under ``transport.call_with_deadline`` and is
    abandoned at the deadline. ``incidents``: the target opens incidents that a ``recovered``
    alert resolves (``divmon alerts test`` resolves the test incident it opens).
    """

    send: Sender
    keeps_deadline: bool = False
    incidents: bool = False


def post_json(
    url: str,
    payload: Any,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
) -> None:
    """POST JSON within ``timeout`` seconds for the whole attempt (``flows.alerts.transport``);
    raises ``httpx.HTTPStatusError`` (it names the status, never the URL in our logs:
    ``flows.alerts.outbox.safe_error``) on a 4xx/5xx answer, ``DeliveryTimeout`` at the deadline."""
    from flows.alerts.transport import post_json as bounded_post

    bounded_post(url, payload, deadline=timeout, headers=headers)


def _headers(entry: Mapping[str, Any]) -> dict[str, str]:
    """``Idempotency-Key`` and ``X-Divtransforms-Dedup-Key`` (``flows.alerts.transport``)."""
    from flows.alerts.transport import alert_headers

    return alert_headers(entry)


def _log_entries(config: MonitorConfig) -> list[dict[str, Any]]:
    from flows.alerts.outbox import AlertLog

    return AlertLog.open(config.history_dir).entries


def send_webhook(
    config: MonitorConfig,
    cfg: NotifyConfig,
    entry: Mapping[str, Any],
    *,
    timeout: float | None = None,
    test: bool = False,
    entries: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """JSON POST ``{"subject", "body"}`` (:meth:`Message.plain`), with the idempotency headers."""
    subject, body = Message.of(entry, config, test=test).plain()
    post_json(
        resolve_secret(cfg.name, cfg.url_env, cfg.url_secret),
        {"subject": subject, "body": body},
        timeout=cfg.timeout if timeout is None else timeout,
        headers=_headers(entry),
    )


def send_block(
    config: MonitorConfig,
    cfg: NotifyConfig,
    entry: Mapping[str, Any],
    *,
    timeout: float | None = None,
    test: bool = False,
    entries: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """``notify(body, subject)`` of the saved notification block ``cfg.block`` (its own
    transport: the attempt is bounded from outside, :attr:`AlertTarget.keeps_deadline`)."""
    from prefect.blocks.core import Block

    subject, body = Message.of(entry, config, test=test).plain()
    # a notification block; its notify() is typed for async callers, but runs here (sync code)
    block: Any = saved_block(cfg.block, Block)
    if hasattr(block, "raise_on_failure"):
        with block.raise_on_failure():
            block.notify(body, subject)
    else:
        block.notify(body, subject)


def send_slack(
    config: MonitorConfig,
    cfg: NotifyConfig,
    entry: Mapping[str, Any],
    *,
    timeout: float | None = None,
    test: bool = False,
    entries: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    url = resolve_secret(cfg.name, cfg.url_env, cfg.url_secret)
    post_json(
        url,
        slack_payload(Message.of(entry, config, test=test)),
        timeout=cfg.timeout if timeout is None else timeout,
        headers=_headers(entry),
    )


def send_email(
    config: MonitorConfig,
    cfg: NotifyConfig,
    entry: Mapping[str, Any],
    *,
    timeout: float | None = None,
    test: bool = False,
    entries: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    key = resolve_secret(cfg.name, cfg.api_key_env, cfg.api_key_secret)
    payload = sendgrid_payload(Message.of(entry, config, test=test), cfg.sender or "", cfg.to)
    post_json(
        cfg.api_url or SENDGRID_URL,
        payload,
        timeout=cfg.timeout if timeout is None else timeout,
        headers={**_headers(entry), "Authorization": f"Bearer {key}"},
    )


def send_pagerduty(
    config: MonitorConfig,
    cfg: NotifyConfig,
    entry: Mapping[str, Any],
    *,
    timeout: float | None = None,
    test: bool = False,
    entries: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    routing_key = resolve_secret(cfg.name, cfg.routing_key_env, cfg.routing_key_secret)
    log_entries = _log_entries(config) if entries is None else entries
    key = incident_key(log_entries, entry)
    require_in_order(log_entries, entry, key, cfg.name)
    payload = pagerduty_payload(Message.of(entry, config, test=test), routing_key, key)
    post_json(
        cfg.api_url or PAGERDUTY_URL,
        payload,
        timeout=cfg.timeout if timeout is None else timeout,
        headers=_headers(entry),
    )


def send_alertmanager(
    config: MonitorConfig,
    cfg: NotifyConfig,
    entry: Mapping[str, Any],
    *,
    timeout: float | None = None,
    test: bool = False,
    entries: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    base = cfg.api_url or resolve_secret(cfg.name, cfg.url_env, cfg.url_secret)
    log_entries = _log_entries(config) if entries is None else entries
    key = incident_key(log_entries, entry)
    require_in_order(log_entries, entry, key, cfg.name)
    earlier = incident_severities(log_entries, entry, key)
    if entry["severity"] == "recovered":
        resolve = earlier or list(_OPENING)
    else:  # an escalation resolves the lower severity's alert of the same incident
        resolve = [s for s in earlier if s != entry["severity"]]
    payload = alertmanager_payload(
        Message.of(entry, config, test=test),
        key,
        resolve_severities=resolve,
        extra_labels=cfg.labels,
        ttl=timedelta(hours=cfg.ttl_hours),
    )
    post_json(
        base.rstrip("/") + "/api/v2/alerts",
        payload,
        timeout=cfg.timeout if timeout is None else timeout,
    )


TARGETS: dict[str, AlertTarget] = {
    "webhook": AlertTarget(send_webhook, keeps_deadline=True),
    "block": AlertTarget(send_block),
    "slack": AlertTarget(send_slack),
    "email": AlertTarget(send_email),
    "pagerduty": AlertTarget(send_pagerduty, incidents=True),
    "alertmanager": AlertTarget(send_alertmanager, incidents=True),
}
"""Every alert target by ``[[notify]] type`` (``flows.config.NotifyConfig.type``)."""
