"""The configured targets as notifiers of the outbox, each attempt bounded in time.

Each ``[[notify]]`` target is sent by its entry in the one registry,
:data:`flows.alerts.targets.TARGETS` (webhook, saved notification block, Slack, e-mail, PagerDuty,
Alertmanager), with messages from the one renderer, :class:`flows.alerts.messages.Message`.
Secrets come from env vars or Secret blocks, resolved when a message is sent and never logged
(``alerts.safe_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flows.alerts.outbox import Notifier
from flows.alerts.targets import TARGETS
from flows.alerts.transport import call_with_deadline
from flows.config import MonitorConfig, NotifyConfig


def build_notifiers(config: MonitorConfig, *, test: bool = False) -> dict[str, Notifier]:
    """``{target name: send(entry, timeout=seconds)}`` for the configured targets; an attempt
    takes at most ``min(target timeout, timeout)`` seconds. ``test`` marks the messages as a
    test (``divmon alerts test``)."""
    return {cfg.name: notifier(config, cfg, test=test) for cfg in config.notify}


def notifier(config: MonitorConfig, cfg: NotifyConfig, *, test: bool = False) -> Notifier:
    """Target ``cfg``'s notifier: its :class:`~flows.alerts.targets.AlertTarget` keeps the
    deadline itself (closing the connection), or the attempt is abandoned after it."""
    target = TARGETS[cfg.type]

    def notify(entry: Mapping[str, Any], timeout: float = cfg.timeout) -> None:
        seconds = min(cfg.timeout, timeout)
        if target.keeps_deadline:
            target.send(config, cfg, entry, timeout=seconds, test=test)
        else:
            call_with_deadline(lambda: target.send(config, cfg, entry, test=test), seconds)

    return notify


def retry_settings(config: MonitorConfig) -> dict[str, tuple[int, float]]:
    return {cfg.name: (cfg.retries, cfg.retry_delay_seconds) for cfg in config.notify}
