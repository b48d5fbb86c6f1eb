"""``divmon files list|retry|forget``: see and release the files the monitor failed to check.

``list`` shows the ledger's failed and quarantined files (``--all``: every file) with attempts
and reason. ``retry`` gives a quarantined file a fresh start (it is checked again by the next
run, with a new retry allowance). ``forget`` removes files from the ledger altogether: a file
that still exists is then new again, one that is gone stops being listed. Both take the run
lock, so they never race a running check.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("divmon")


def _store(config_path: str):
    from flows.config import load_config
    from flows.monitor.state import StateStore

    config = load_config(config_path)
    return StateStore.for_config(config)


def _select(store, state, names: list[str], all_failed: bool) -> list[str]:
    if all_failed:
        return sorted(k for k, e in state.ledger.items() if e.status != "checked")
    keys = []
    for name in names:
        key = name if name in state.ledger else store.key(name)
        if key not in state.ledger:
            raise ValueError(f"{name} is not in the ledger (divmon files list --all shows it)")
        keys.append(key)
    return keys


def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    store = _store(args.config)
    state = store.load()
    rows = [
        {"file": k, **e.to_dict(), "status": e.status}
        for k, e in sorted(state.ledger.items())
        if args.all or e.status != "checked"
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no failed or quarantined files" if not args.all else "the ledger is empty")
        return 0
    for r in rows:
        line = f"{r['status']:<12} {r['file']}"
        if r["status"] != "checked":
            line += f"  attempts={r['attempts']}  last={r['failed_at']}  reason: {r['reason']}"
        print(line)
    return 0


def _change(args: argparse.Namespace, action: str) -> int:
    store = _store(args.config)
    if not args.files and not args.all_failed:
        raise ValueError(f"files {action}: name the files, or give --all-failed")
    with store.locked(owner=f"divmon files {action}"):
        state = store.load()
        keys = _select(store, state, args.files, args.all_failed)
        for key in keys:
            if action == "forget":
                del state.ledger[key]
            else:
                entry = state.ledger[key]
                if entry.status == "checked":
                    raise ValueError(f"{key} was checked; only failed files can be retried")
                entry.status, entry.attempts = "failed", 0
        store.save(state)
    verb = "forgotten" if action == "forget" else "released for the next run"
    for key in keys:
        print(f"{key}: {verb}")
    if not keys:
        print("nothing to do", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace, extra: list[str]) -> int:
    return _change(args, "retry")


def cmd_forget(args: argparse.Namespace, extra: list[str]) -> int:
    return _change(args, "forget")


def register(subparsers: argparse._SubParsersAction) -> None:
    files = subparsers.add_parser(
        "files", help="input files the monitor failed to check (list, retry, forget)"
    )
    sub = files.add_subparsers(dest="files_command", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="failed and quarantined files, with the reason")
    ls.add_argument("--config", required=True, help="monitor TOML file")
    ls.add_argument("--all", action="store_true", help="every file in the ledger")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.set_defaults(handler=cmd_list)
    for name, handler, text in (
        ("retry", cmd_retry, "check quarantined files again on the next run"),
        ("forget", cmd_forget, "remove files from the ledger (an existing file is new again)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="monitor TOML file")
        p.add_argument("files", nargs="*", help="files (paths or ledger keys)")
        p.add_argument("--all-failed", action="store_true", help="every failed/quarantined file")
        p.set_defaults(handler=handler)
