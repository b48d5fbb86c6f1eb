"""``divmon check --rolling 28d --rolling-state DIR``: a one-shot check with a rolling reference.

The rules are ``divtransforms.rolling``'s, and the state the monitor keeps
(``flows.monitor.rolling``) is the same :class:`~divtransforms.rolling_store.RollingStore`: here
``DIR/rolling.json`` and the rolled profiles in ``DIR/versions/``. Each check is judged by the
current rolled reference (the ``--reference`` seed before the first roll), keeps its windows
(``CheckJob.keep_windows``, any engine), folds them with its records' breaches and rolls when
its windows crossed a ``--roll-every`` boundary. Checks of one state must not run at the same
time (the monitor's run lock is what serialises a scheduled monitor's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from divtransforms import storage
from divtransforms.rolling_store import RollingStore, rolling_spans
from pipelines.spec import CheckJob, CheckJobError, CheckResult, load_reference

__all__ = ["rolling_of", "rolling_store", "run_rolling_check"]

_LOG = logging.getLogger(__name__)


def rolling_store(
    state_dir: str, window: Any, rolling: str, every: str = "1d", absorb: str | None = None
) -> RollingStore:
    """The store of ``--rolling-state DIR`` (the spans checked, errors naming the options)."""
    from divtransforms.columns import duration_micros

    if window is None:
        raise CheckJobError("--rolling needs --window (event-time windows)")
    try:
        spans = rolling_spans(window, rolling, every, absorb, "--")
    except ValueError as exc:
        raise CheckJobError(str(exc).replace("_", "-")) from None
    return RollingStore(
        storage.join(state_dir, "rolling.json"),
        storage.join(state_dir, "versions"),
        duration_micros(window),
        *spans,
    )


def rolling_of(options: Any, job: CheckJob, *, streaming: bool = False) -> RollingStore | None:
    """The store of a command line's ``--rolling``/``--rolling-state`` (None without them);
    a usage error (:class:`CheckJobError`) when only one is given or the check is not a batch
    check of files."""
    rolling = getattr(options, "rolling", None)
    state_dir = getattr(options, "rolling_state", None)
    if not (rolling or state_dir):
        return None
    if not (rolling and state_dir):
        raise CheckJobError("--rolling and --rolling-state go together")
    if streaming or job.source.streaming or not job.source.inputs:
        raise CheckJobError("--rolling is for batch checks of files (--input)")
    return rolling_store(
        state_dir,
        job.window,
        rolling,
        getattr(options, "roll_every", None) or "1d",
        getattr(options, "absorb_after", None),
    )


def run_rolling_check(
    job: CheckJob,
    pipeline_args: Sequence[str],
    store: RollingStore,
    *,
    run: Callable[..., CheckResult],
    on_job: Any = None,
) -> tuple[CheckResult, dict[str, Any] | None]:
    """Check ``job`` (its ``reference`` is the seed) with the current rolled reference, fold
    the checked windows and breaches, roll when due. ``run`` runs the check (the engine's
    choice for ``divmon check``, Beam for ``python -m pipelines.check_job``). Returns the
    result and the roll's log entry (None: not due)."""
    seed = load_reference(job.reference)
    if seed.windows is None:
        raise CheckJobError(
            f"--rolling needs a windowed reference: build {seed.reference_id} with --window and "
            "--timestamp-column"
        )
    state, why = store.load(seed)
    if why is not None and storage.exists(store.state_path):
        _LOG.warning("rolling reference: %s", why)
    reference, note = store.current(seed, state)
    if note is not None:
        _LOG.warning("%s", note)
    mle_state = store.carried(seed, state, reference, job.mle_state) if job.mle_state else None
    result = run(
        replace(job, reference=reference, keep_windows=True, mle_state=mle_state),
        pipeline_args,
        on_job=on_job,
    )
    state.fold(seed, result.run_id, result.windows, result.records.to_pylist())
    info = store.roll_if_due(seed, state)
    if info is None:
        store.save(state)
    return result, info
