"""The ``--resume RUN`` readers: what a recorded run, cut off, left to do.

Each opens the run store of ``--runs`` read-only and reads run ``run_id`` back;
``program --resume`` and ``drift --resume`` (``pcm_hil.cli.commands``) continue from what they
return.
``check_resume`` refuses, before anything is pulsed or recorded, a run not to be continued on
the chip at hand.
"""

from __future__ import annotations

import argparse

import numpy as np


def program_left(runs: str | None, run_id: int):
    """(tiles, addresses, targets, finished) of program-and-verify run ``run_id``: the devices
    still to program, and how many it had finished."""
    from pcm_hil.records.resume import unfinished_from_run
    from pcm_hil.records.store import RunStore

    with RunStore(runs, readonly=True) as store:
        return unfinished_from_run(store, run_id)


def drift_record(runs: str | None, run_id: int):
    """How far drift run ``run_id`` got (``records.resume.DriftRecord``): the progress
    ``measure_drift(resume=…)`` continues, its fit and reads per read time."""
    from pcm_hil.records.resume import drift_from_run
    from pcm_hil.records.store import RunStore

    with RunStore(runs, readonly=True) as store:
        return drift_from_run(store, run_id)


def check_resume(args: argparse.Namespace, chip) -> None:
    """Refuse ``--resume RUN`` on the open ``chip`` before anything is pulsed or recorded,
    unless RUN can be continued there: RUN is this chip's — reached the same way, with the
    same identity, geometry and clock mode (``records.resume.check_same_chip``), and not a
    fresh embedded emulator (RUN's chip went with the process that ran it) — and has
    something left to do. For a drift measurement, the chip's clock has not gone back since
    RUN last programmed or read (a restarted chip holds no drift to continue), a read time
    RUN has left is still ahead of it (``check_reads_ahead``), and RUN's devices, read now,
    hold what RUN last read of them (``check_devices_hold``: the same identity may be another
    chip). That read is not recorded, and changes nothing: a read does not disturb a PCM
    device."""
    from pcm_hil.emulator.resource import is_emulator
    from pcm_hil.records.resume import check_devices_hold, check_reads_ahead, check_same_chip
    from pcm_hil.records.store import RunStore

    with RunStore(args.runs) as store:  # written next anyway: an old store migrates here
        run = store.run(args.resume)
    check_same_chip(run, args.resource, chip.config, chip.clock_mode())
    if is_emulator(args.resource):
        raise ValueError(
            f"run {run.id} ran on the embedded emulator, whose chip went with the process that "
            "ran it: a run to resume needs a served chip (pcm-hil emulator serve)"
        )
    if args.command == "program":
        _tiles, addresses, _targets, finished = program_left(args.runs, args.resume)
        if addresses.size == 0:
            raise ValueError(f"run {run.id} left no device to program: all {finished} finished")
        return
    record = drift_record(args.runs, args.resume)
    progress = record.progress
    if len(progress.reads) >= len(progress.times_s):
        raise ValueError(f"run {run.id} took all its {len(progress.times_s)} reads: none is left")
    last = float(np.max([*progress.programmed_at_s, *progress.read_at_s], initial=0.0))
    now = chip.time()
    if now < last:
        raise ValueError(
            f"the chip's clock reads {now:.0f} s, before run {run.id} last programmed or read "
            f"({last:.0f} s): a restarted chip holds no drift to continue, its clock no longer "
            "counts from the programming"
        )
    check_reads_ahead(record, run.id, now)
    if record.known_uS is not None:
        check_devices_hold(record, run.id, read_devices(chip, record), now)


def read_devices(chip, record) -> np.ndarray:
    """The devices of a recorded drift run, read as it reads them (the mean of its reads per
    read time), µS, in its order."""
    progress = record.progress
    tiles = np.asarray(progress.tile, dtype=np.int64)
    addresses = np.asarray(progress.address, dtype=np.int64)
    values = np.zeros(addresses.size, dtype=np.float64)
    for tile in np.unique(tiles):
        at = tiles == tile
        for _ in range(record.reads_per_point):
            values[at] += chip.read(int(tile), addresses[at])
    return values / record.reads_per_point
