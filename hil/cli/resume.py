"""The ``--resume RUN`` readers: what a recorded run, cut off, left to do.

Each opens the run store of ``--runs`` and reads run ``run_id`` back; ``program --resume``
and ``drift --resume`` (``pcm_hil.cli.commands``) continue from what they return.
"""

from __future__ import annotations


def program_left(runs: str | None, run_id: int):
    """(tiles, addresses, targets, finished) of program-and-verify run ``run_id``: the devices
    still to program, and how many it had finished."""
    from pcm_hil.records.resume import unfinished_from_run
    from pcm_hil.records.store import RunStore

    with RunStore(runs) as store:
        return unfinished_from_run(store, run_id)


def drift_progress(runs: str | None, run_id: int):
    """How far drift run ``run_id`` got: the progress ``measure_drift(resume=…)`` continues."""
    from pcm_hil.records.resume import progress_from_run
    from pcm_hil.records.store import RunStore

    with RunStore(runs) as store:
        return progress_from_run(store, run_id)
