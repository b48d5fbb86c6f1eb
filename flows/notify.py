"""Notification targets as Prefect notification blocks; secrets from env vars or Secret blocks.

``webhook`` -> ``CustomWebhookNotificationBlock`` (JSON POST ``{"subject", "body"}`` with the
dedup key in the ``X-Divtransforms-Dedup-Key`` header), ``block`` -> any saved notification block
(``Block.load("type-slug/name")``); ``slack`` (Block Kit), ``email`` (SendGrid, HTML + text),
``pagerduty`` (Events v2) and ``alertmanager`` messages are rendered from templates by
``flows.targets``.
URLs and keys are resolved when a message is sent and are never logged (``alerts.safe_error``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flows.alerts import Notifier, message
from flows.config import MonitorConfig, NotifyConfig


class SecretMissing(ValueError):
    """A configured secret (environment variable or Secret block) is not available."""


def resolve_secret(target: str, env: str | None, secret_block: str | None) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretMissing(f"notify {target!r}: environment variable {env} is not set")
        return value
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(secret_block).get()
    except ValueError as exc:
        raise SecretMissing(f"notify {target!r}: Secret block {secret_block!r} not found") from exc
    return str(value)


def _webhook(cfg: NotifyConfig, entry: Mapping[str, Any]) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    subject, body = message(entry)
    block = CustomWebhookNotificationBlock(
        name="divtransforms",
        url=resolve_secret(cfg.name, cfg.url_env, cfg.url_secret),
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        headers={"X-Divtransforms-Dedup-Key": entry["dedup_key"]},
        timeout=cfg.timeout,
        allow_private_urls=True,
    )
    block.notify(body, subject)


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
    """``{target name: send(entry)}`` for the configured targets.

    Slack, email, PagerDuty and Alertmanager messages are rendered from templates
    (``flows.targets``); ``test`` marks them as a test (``divmon alerts test``).
    """
    from flows.targets import SENDERS as RENDERED

    out: dict[str, Notifier] = {}
    for cfg in config.notify:
        if cfg.type in RENDERED:
            send = RENDERED[cfg.type]
            out[cfg.name] = lambda entry, _cfg=cfg, _send=send: _send(
                config, _cfg, entry, test=test
            )
            continue
        send = _SENDERS[cfg.type]
        out[cfg.name] = lambda entry, _cfg=cfg, _send=send: _send(_cfg, entry)
    return out


def retry_settings(config: MonitorConfig) -> dict[str, tuple[int, float]]:
    return {cfg.name: (cfg.retries, cfg.retry_delay_seconds) for cfg in config.notify}
