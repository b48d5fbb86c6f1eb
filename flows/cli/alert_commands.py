"""``divmon alerts test``, ``divmon alerts list`` and ``divmon alerts uninstall``.

``test`` sends one clearly marked test alert to every configured target, through the same code
that delivers real alerts, and reports each target's result (exit status 1 if any failed). For
PagerDuty and Alertmanager the test incident is resolved right after it is opened, so nobody is
left with an open page. ``list`` shows the alert log (the outbox: what is still undelivered, and
why) or, with ``--automations``, the Prefect Automations ``install`` created. ``uninstall``
removes those automations and the blocks ``install`` saved for them.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any


def test_entry(config: Any, severity: str = "warning") -> dict:
    """A synthetic alert-log entry, marked as a test in every field a receiver shows."""
    now = datetime.now(UTC).replace(microsecond=0)
    policy = config.build_policy().default
    stamp = now.isoformat()
    key = f"divmon-alerts-test|{config.name}|{stamp}|{severity}"
    return {
        "dedup_key": key,
        "feature": "divmon-alerts-test",
        "window_start": (now - timedelta(hours=1)).isoformat(),
        "window_end": stamp,
        "severity": severity,
        "metric": policy.metric,
        "value": policy.warn if severity != "recovered" else 0.0,
        "reference_id": "test",
        "created_at": stamp,
        "run_id": "divmon-alerts-test",
        "reason": "test alert sent by divmon alerts test; no drift was detected",
        "record": {"n": 0, "p_value": None, "run_id": "divmon-alerts-test"},
        "test": True,
    }


def send_test_alerts(config: Any) -> dict[str, str | None]:
    """``{target: None if delivered else the error (no secrets)}``."""
    from flows.alerts.notify import build_notifiers
    from flows.alerts.outbox import safe_error
    from flows.alerts.targets import TARGETS

    results: dict[str, str | None] = {}
    notifiers = build_notifiers(config, test=True)
    for cfg in config.notify:
        trigger = test_entry(config)
        try:
            target = TARGETS[cfg.type]
            if target.incidents:  # open the test incident, then resolve it
                resolve = test_entry(config, "recovered")
                target.send(config, cfg, trigger, test=True, entries=[trigger])
                target.send(config, cfg, resolve, test=True, entries=[trigger, resolve])
            else:
                notifiers[cfg.name](trigger)
        except Exception as exc:  # report every target, whatever failed
            results[cfg.name] = safe_error(exc) if not isinstance(exc, ValueError) else str(exc)
        else:
            results[cfg.name] = None
    return results


def cmd_test(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.cli.server import prefect_defaults
    from flows.config import load_config

    config = load_config(args.config)
    if not config.notify:
        raise ValueError("no [[notify]] targets in the config: nothing to test")
    prefect_defaults()
    blocks = [
        t.block or t.url_secret or t.routing_key_secret or t.api_key_secret for t in config.notify
    ]
    if any(blocks):
        from flows.cli.server import prefect_api

        with prefect_api():  # Secret and notification blocks live in the Prefect API
            results = send_test_alerts(config)
    else:
        results = send_test_alerts(config)
    for name, error in results.items():
        print(f"{name}: {'ok' if error is None else 'FAILED: ' + error}")
    return 0 if all(e is None for e in results.values()) else 1


def _row(entry: dict) -> dict[str, Any]:
    return {
        "created_at": entry.get("created_at"),
        "severity": entry.get("severity"),
        "feature": entry.get("feature"),
        "window": f"{entry.get('window_start') or '-'} .. {entry.get('window_end') or '-'}",
        "status": entry.get("status"),
        "deliveries": {
            t: (d.get("status"), d.get("attempts"), d.get("last_error"))
            for t, d in (entry.get("deliveries") or {}).items()
        },
    }


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.config import load_config

    config = load_config(args.config)
    if args.automations:
        from flows.alerts.automations import installed_automations
        from flows.cli.server import prefect_api, prefect_defaults

        prefect_defaults()
        with prefect_api():
            found = installed_automations(config)
        for a in found:
            print(f"{a.name}  id={a.id}  enabled={a.enabled}")
        if not found:
            print(f"no automations installed for monitor {config.name!r}")
        return 0
    from flows.alerts.outbox import AlertLog

    entries = AlertLog.open(config.history_dir).entries
    if args.outstanding:
        entries = [e for e in entries if e.get("status") != "delivered"]
    entries = entries[-args.limit :] if args.limit else entries
    if args.json:
        print(json.dumps([_row(e) for e in entries], indent=2))
        return 0
    if not entries:
        print("no alerts" + (" outstanding" if args.outstanding else "") + " in the alert log")
        return 0
    for e in entries:
        row = _row(e)
        targets = ", ".join(
            f"{t}={s}" + (f" ({err})" if err else "")
            for t, (s, _n, err) in row["deliveries"].items()
        )
        print(
            f"{row['created_at']}  {row['severity']:<9}  {row['feature']}  {row['window']}  "
            f"{row['status']}" + (f"  [{targets}]" if targets else "")
        )
    return 0


def cmd_uninstall(args: argparse.Namespace, extra: list[str]) -> int:
    from flows.alerts.automations import uninstall_automations
    from flows.cli.server import prefect_defaults
    from flows.config import load_config

    config = load_config(args.config)
    prefect_defaults()
    from flows.cli.server import prefect_api

    with prefect_api():
        removed = uninstall_automations(config)
    for a in removed:
        block = f" and block {a['block']!r}" if a["block"] else ""
        print(f"removed automation {a['name']!r} ({a['id']}){block}")
    if not removed:
        print(f"no automations installed for monitor {config.name!r}")
    return 0


def register(alerts_sub: argparse._SubParsersAction) -> None:
    test = alerts_sub.add_parser(
        "test", help="send one test alert to every configured target and report each result"
    )
    test.add_argument("--config", required=True, help="monitor TOML file")
    test.set_defaults(handler=cmd_test)

    lst = alerts_sub.add_parser(
        "list", help="show the alert log (delivery status per target), or the automations"
    )
    lst.add_argument("--config", required=True, help="monitor TOML file")
    lst.add_argument("--outstanding", action="store_true", help="only undelivered alerts")
    lst.add_argument("--limit", type=int, default=50, help="newest N alerts (0: all)")
    lst.add_argument("--json", action="store_true", help="JSON instead of lines")
    lst.add_argument(
        "--automations", action="store_true", help="list the Automations install created"
    )
    lst.set_defaults(handler=cmd_list)

    uninstall = alerts_sub.add_parser(
        "uninstall", help="remove the Automations (and blocks) that alerts install created"
    )
    uninstall.add_argument("--config", required=True, help="monitor TOML file")
    uninstall.set_defaults(handler=cmd_uninstall)
