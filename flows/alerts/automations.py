"""``divmon alerts install``: Prefect Automations that route ``divtransforms.drift.*`` events.

For each configured notification target one automation per monitor: an event trigger on
``divtransforms.drift.*`` from any ``divtransforms.feature.*`` resource of this monitor, one bucket
per feature (``for_each``), and a ``SendNotification`` action to the target's block. The trigger's
``within`` window is the suppression window: at most one notification per feature and window.
Webhook/Slack targets become saved blocks named ``divtransforms-<monitor>-<target>`` (the server
stores block secrets); ``block`` targets use the named block. Re-running replaces the automations.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from flows.alerts.events import EVENT_PREFIX
from flows.alerts.secrets import resolve_secret, saved_block
from flows.config import MonitorConfig, NotifyConfig

log = logging.getLogger(__name__)
INSTALLED_BLOCK_PREFIX = "divtransforms-"
FLOW_ONLY_TYPES = ("pagerduty", "alertmanager")


def _block_document_id(config: MonitorConfig, target: NotifyConfig):
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    name = block_name(config, target)
    if target.type == "block":
        block = saved_block(target.block, Block)
        return block._block_document_id, target.block
    url = resolve_secret(target.name, target.url_env, target.url_secret)
    if target.type == "webhook":
        block = CustomWebhookNotificationBlock(
            name="divtransforms",
            url=url,
            method="POST",
            json_data={"subject": "{{subject}}", "body": "{{body}}"},
            timeout=target.timeout,
            allow_private_urls=True,
        )
    elif target.type == "slack":
        block = SlackWebhook(url=url)
    else:
        raise ValueError(
            f"notify {target.name!r}: type {target.type!r} cannot be installed as "
            "an automation action; save a notification block and use type = "
            '"block"'
        )
    block.save(name, overwrite=True)
    return block._block_document_id, f"{block.get_block_type_slug()}/{name}"


def block_name(config: MonitorConfig, target: NotifyConfig) -> str:
    """The block ``install`` saves for a webhook/Slack target (never a user's own block)."""
    raw = f"{INSTALLED_BLOCK_PREFIX}{config.name}-{target.name}"
    return raw.lower().replace("_", "-").replace(".", "-")


def automation_name(config: MonitorConfig, target: NotifyConfig) -> str:
    return f"{automation_prefix(config)}{target.name}"


def automation_prefix(config: MonitorConfig) -> str:
    """Every automation ``install`` made for this monitor starts with this (names have no ':')."""
    return f"divtransforms {config.name}: drift -> "


def installed_automations(config: MonitorConfig) -> list[Any]:
    """The automations ``install`` created for this monitor (also for targets removed since)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return sorted(
            (a for a in client.read_automations() if a.name.startswith(automation_prefix(config))),
            key=lambda a: a.name,
        )


def uninstall_automations(config: MonitorConfig) -> list[dict[str, Any]]:
    """Delete this monitor's automations and the blocks ``install`` saved for them.

    Blocks a ``block`` target names are the user's and stay. Returns ``[{name, id, block}]``.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    out = []
    with get_client(sync_client=True) as client:
        for automation in installed_automations(config):
            removed_block = None
            for action in automation.actions:
                block_id = getattr(action, "block_document_id", None)
                if block_id is None:
                    continue
                try:
                    doc = client.read_block_document(block_id)
                except ObjectNotFound:
                    continue
                if doc.name and doc.name.startswith(INSTALLED_BLOCK_PREFIX):
                    client.delete_block_document(block_id)
                    removed_block = doc.name
            client.delete_automation(automation.id)
            log.info("automation %r removed", automation.name)
            out.append({"name": automation.name, "id": str(automation.id), "block": removed_block})
    return out


def install_automations(
    config: MonitorConfig, suppression: timedelta = timedelta(minutes=60)
) -> list[dict[str, Any]]:
    """Create (or replace) the automations; returns ``[{name, id, block}]``."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    if not config.notify:
        raise ValueError("no [[notify]] targets in the config: nothing to route events to")
    out = []
    for target in config.notify:
        if target.type in FLOW_ONLY_TYPES:
            log.warning(
                "notify %r (%s): delivered by the flow only (it resolves incidents by their "
                "key, which an automation's notification cannot); no automation installed",
                target.name,
                target.type,
            )
            continue
        block_id, block_ref = _block_document_id(config, target)
        name = automation_name(config, target)
        try:
            cast(Automation, Automation.read(name=name)).delete()
        except ValueError:
            pass
        automation = Automation(
            name=name,
            description=f"Route {EVENT_PREFIX}.* events of monitor {config.name!r} to {block_ref}",
            trigger=EventTrigger(
                expect={f"{EVENT_PREFIX}.*"},
                match={
                    "prefect.resource.id": "divtransforms.feature.*",
                    "divtransforms.monitor": config.name,
                },
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
                within=suppression,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="[divtransforms] {{ event.event }}: {{ event.resource.name }}",
                    body="{{ event.payload | tojson }}",
                )
            ],
        )
        created = cast(Automation, automation.create())  # sync code: the created automation
        log.info("automation %r -> %s installed", name, block_ref)
        out.append({"name": name, "id": str(created.id), "block": block_ref})
    return out
