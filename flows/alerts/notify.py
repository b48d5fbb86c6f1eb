"""Notification targets as Prefect notification blocks; secrets from env vars or Secret blocks.

``webhook`` -> a JSON POST ``{"subject", "body"}`` by :mod:`flows.alerts.transport` (a deadline for
the whole attempt; ``Idempotency-Key`` and ``X-Divtransforms-Dedup-Key`` headers), ``block`` ->
any saved notification block (``Block.load("type-slug/name")``); ``slack`` (Block Kit), ``email``
(SendGrid, HTML + text), ``pagerduty`` (Events v2) and ``alertmanager`` messages are rendered
from templates by ``flows.alerts.targets``. Every attempt runs under a deadline.
URLs and keys are resolved when a message is sent and are never logged (``alerts.safe_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.alerts.outbox import Notifier, message
from flows.alerts.secrets import resolve_secret
from flows.config import MonitorConfig, NotifyConfig


def _webhook(cfg: NotifyConfig, entry: Mapping[str, Any], timeout: float) -> None:
    """JSON POST ``{"subject", "body"}`` through :mod:`flows.alerts.transport` (whole-attempt
    deadline, idempotency headers)."""
    from flows.alerts.transport import alert_headers, post_json

    subject, body = message(entry)
    post_json(
        resolve_secret(cfg.name, cfg.url_env, cfg.url_secret),
        {"subject": subject, "body": body},
        deadline=timeout,
        headers=alert_headers(entry),
    )


def _saved_block(cfg: NotifyConfig, entry: Mapping[str, Any]) -> None:
    from prefect.blocks.core import Block

    subject, body = message(entry)
    block = Block.load(cfg.block)
    if hasattr(block, "raise_on_failure"):
        with block.raise_on_failure():
            block.notify(body, subject)
    else:
        block.notify(body, subject)


_SENDERS = {"webhook": _webhook, "block": _saved_block}


def build_notifiers(config: MonitorConfig, *, test: bool = False) -> dict[str, Notifier]:
    """``{target name: send(entry, timeout=seconds)}`` for the configured targets; an attempt
    takes at most ``min(target timeout, timeout)`` seconds.

    Slack, email, PagerDuty and Alertmanager messages are rendered from templates
    (``flows.alerts.targets``); ``test`` marks them as a test (``divmon alerts test``).
    """
    from flows.alerts.targets import SENDERS as RENDERED

    out: dict[str, Notifier] = {}
    for cfg in config.notify:
        if cfg.type in RENDERED:
            send = RENDERED[cfg.type]
            out[cfg.name] = _bounded(
                cfg, lambda _cfg, entry, _send=send: _send(config, _cfg, entry, test=test)
            )
            continue
        out[cfg.name] = _bounded(cfg, _SENDERS[cfg.type])
    return out


def _bounded(cfg: NotifyConfig, send) -> Notifier:
    from flows.alerts.transport import call_with_deadline

    def notify(entry: Mapping[str, Any], timeout: float = cfg.timeout) -> None:
        seconds = min(cfg.timeout, timeout)
        if send is _webhook:
            _webhook(cfg, entry, seconds)  # keeps its own deadline, closing the connection
        else:
            call_with_deadline(lambda: send(cfg, entry), seconds)

    return notify


def retry_settings(config: MonitorConfig) -> dict[str, tuple[int, float]]:
    return {cfg.name: (cfg.retries, cfg.retry_delay_seconds) for cfg in config.notify}
