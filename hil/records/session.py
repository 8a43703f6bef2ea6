"""A lab script's own run: ``pcm_hil.record``:

    import pcm_hil

    with pcm_hil.PcmChip.open("emulator") as chip, pcm_hil.record(
        "w12-retention", chip=chip, meta={"sample": "W12", "die": 7}, note="after anneal"
    ) as run:
        result = pcm_hil.program_and_verify(chip, 0, addresses, targets, listeners=run.listeners)
        drift = pcm_hil.measure_drift(chip, pcm_hil.ChipClock(chip), …, listeners=run.listeners)
        run.summary = result.summary()          # what `pcm-hil runs show` prints again
    ds = pcm_hil.load_run(run.id, "drift")

The run is recorded as the CLI records its own: every document of every procedure given
``run.listeners``, committed as it comes (a killed script loses no completed step); the chip's
identity and geometry; the script's metadata — on top of the defaults of the config file and
``$PCM_HIL_META`` (``pcm_hil.records.metadata``); on the embedded emulator its profile and
seed. The run ends ``completed`` when the block ends, ``cancelled`` on Ctrl-C, ``failed`` with
the error when it raises (the error is raised on).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pcm_hil.documents.events import Listener
from pcm_hil.records.metadata import check_key, run_labels
from pcm_hil.records.store import Recorder, RunStore


@dataclass
class RecordedRun:
    """A run being recorded by ``record``: its ``id``, its ``store``, the ``listeners`` to
    give the procedures, and a ``summary`` to keep with it (a dict of JSON values)."""

    id: int
    store: RunStore
    recorder: Recorder
    summary: dict[str, Any] | None = None
    extra_listeners: list[Listener] = field(default_factory=list)

    @property
    def listeners(self) -> list[Listener]:
        """The listeners to pass to every procedure of the run (``listeners=run.listeners``)."""
        return [self.recorder, *self.extra_listeners]

    def __call__(self, event) -> None:
        """The run is a listener too: ``listeners=[run]``."""
        for listener in self.listeners:
            listener(event)


@contextmanager
def record(
    name: str,
    *,
    chip: Any = None,
    meta: Mapping[str, Any] | None = None,
    note: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    parameters: Mapping[str, Any] | None = None,
    store: RunStore | str | os.PathLike | None = None,
    listeners: list[Listener] | tuple[Listener, ...] = (),
) -> Iterator[RecordedRun]:
    """Record a script's run named ``name`` (its procedure in ``runs list``) into ``store``
    (default: the user's run store) while the block runs; see the module. ``chip``: the open
    chip it runs on (its identity is recorded); ``meta``, ``note``, ``tags``: its labels
    (added to the defaults); ``parameters``: what the script wants kept of its settings;
    ``listeners``: more listeners for every document (a progress bar)."""
    labels = run_labels((), note, tags)
    for key in meta or {}:
        check_key(key, "record(meta=…)")
    given = {k: v.strip() if isinstance(v, str) else v for k, v in (meta or {}).items()}
    merged = {k: v for k, v in {**labels.meta, **given}.items() if v is not None}
    resource = getattr(chip, "resource", None)
    emulator = emulator_parameters(resource, None) if resource else {}
    opened = store if isinstance(store, RunStore) else RunStore(store)
    try:
        run_id = opened.start_run(
            name,
            resource=resource,
            parameters={**(parameters or {}), **emulator},
            seed=emulator["emulator"]["seed"] if emulator else None,
            meta=merged,
            note=labels.note,
            tags=labels.tags,
        )
        if chip is not None and hasattr(chip, "config"):
            opened.describe_chip(run_id, chip.config)
        # the block ends the run, not the end of a procedure that happens to share its name
        run = RecordedRun(run_id, opened, Recorder(opened, run_id, None), None, list(listeners))
        try:
            yield run
        except KeyboardInterrupt:
            opened.finish_run(run_id, "cancelled", "interrupted")
            raise
        except SystemExit as done:
            if done.code not in (None, 0):
                run.recorder.fail(done)
            elif opened.run(run_id).status == "running":
                opened.finish_run(run_id, "completed")
            raise
        except BaseException as error:
            run.recorder.fail(error)
            raise
        if run.summary is not None:
            opened.set_summary(run_id, run.summary)
        if opened.run(run_id).status == "running":
            opened.finish_run(run_id, "completed")
    finally:
        if not isinstance(store, RunStore):
            opened.close()


def emulator_parameters(resource: str | None, seed: int | None) -> dict:
    """On the embedded emulator, what chip it makes — ``{"emulator": {"profile", "seed",
    and any geometry or clock option}}`` — from the resource (its seed, else the command's
    ``--seed``, else 0); nothing on any other resource (it reports its identity itself)."""
    from pcm_hil.emulator.resource import EmulatorOptions, is_emulator

    if not is_emulator(resource):
        return {}
    options = EmulatorOptions.parse(str(resource), default_seed=seed or 0)
    return {
        "emulator": {"profile": options.profile, "seed": int(options.seed), **options.overrides}
    }
