"""Opening what a command runs on: the chip named by ``--resource``, a bench of discrete
instruments (``--bench``), and the chips of a multi-chip experiment (``chip_opener``)."""

from __future__ import annotations

import argparse
import os

from pcm_hil.drivers import PcmChip


def open_chip(args: argparse.Namespace) -> PcmChip:
    """The chip of ``--resource`` (with ``--timeout``, ``--visa-library`` and ``--record``)."""
    return PcmChip.open(
        args.resource,
        timeout_s=args.timeout,
        visa_library=args.visa_library,
        record=getattr(args, "record", None),
    )


def indexed_cassette(path: str, index: int) -> str:
    """The cassette of chip ``index`` of a multi-chip command: ``path`` for chip 0, else
    ``path``'s name with ``.index`` before its suffix (``s.cassette`` → ``s.2.cassette``)."""
    if index == 0:
        return path
    folder, name = os.path.split(path)
    stem, dot, suffix = name.rpartition(".")
    named = f"{stem}.{index}.{suffix}" if dot and stem else f"{name}.{index}"
    return os.path.join(folder, named)


def check_resource(resource: str) -> None:
    """Refuse a resource string that names no chip to open, before anything is opened or
    recorded (ResourceError): an emulator's options, its geometry estimated to fit in memory;
    a TCP socket's port."""
    from pcm_hil.drivers.transports.tcp import SocketTransport
    from pcm_hil.emulator.resource import EmulatorOptions, is_emulator

    if is_emulator(resource):
        EmulatorOptions.parse(resource)
    else:
        SocketTransport.match(resource.strip())


def open_target(args: argparse.Namespace):
    """What a procedure runs on: the bench of ``--bench`` if given, else the chip."""
    if getattr(args, "bench", None):
        if getattr(args, "record", None):
            raise ValueError("--record records a chip's session: a bench's instruments have none")
        from pcm_hil.targets.bench import BenchTarget

        return BenchTarget.open(args.bench, timeout_s=args.timeout, visa_library=args.visa_library)
    return open_chip(args)


class Borrowed:
    """An open chip lent to code that will ``close`` it: closing does nothing."""

    def __init__(self, chip) -> None:
        self._chip = chip

    def __getattr__(self, name):
        return getattr(self._chip, name)

    def close(self) -> None:
        pass


def chip_opener(
    resource: str,
    timeout_s: float,
    visa_library: str | None,
    seed: int,
    shared=None,
    record: str | None = None,
    first: int = 0,
):
    """``open_chip(i)``: the i-th chip of an experiment. On the embedded emulator chip i is a
    fresh chip seeded ``seed + i``; any other resource is the same chip, programmed anew (the
    ``shared`` open chip, if given: one client at a time). An experiment may open a chip more
    than once (once per set of weights): with ``record``, the k-th open (counted from
    ``first``) records to ``indexed_cassette(record, k)``, and a ``replay:FILE`` resource plays
    the k-th open from that cassette of FILE when there is one (the chips were the
    emulator's, each open its own), else as the resource says (one chip, one cassette).
    Refuses (FileExistsError) a ``record`` whose cassettes exist, before anything is opened."""
    from pathlib import Path

    from pcm_hil.emulator.resource import EmulatorOptions, is_emulator

    if record is not None:
        taken = [p for p in _cassettes_of(record) if p.exists()]
        if taken:
            raise FileExistsError(f"{taken[0]} exists: record to a new file")
    opened = [first]  # the next open's number

    def open_chip(index: int):
        number = opened[0]
        opened[0] += 1
        cassette = indexed_cassette(record, number) if record else None
        if is_emulator(resource):
            options = EmulatorOptions.parse(resource, default_seed=seed)
            fresh = options.with_seed(options.seed + index).resource
            return PcmChip.open(fresh, timeout_s=timeout_s, record=cassette)
        if resource.startswith("replay:"):
            path, sep, options_text = resource.removeprefix("replay:").partition("?")
            own = indexed_cassette(path, number)
            if own != path and Path(own).exists():
                return PcmChip.open("replay:" + own + sep + options_text, timeout_s=timeout_s)
        if shared is not None:
            return Borrowed(shared)
        return PcmChip.open(
            resource, timeout_s=timeout_s, visa_library=visa_library, record=cassette
        )

    return open_chip


def _cassettes_of(record: str) -> list:
    """``record`` and the indexed cassettes next to it (``s.cassette``, ``s.1.cassette``, …)."""
    from pathlib import Path

    path = Path(record)
    stem, dot, suffix = path.name.rpartition(".")
    pattern = f"{stem}.*.{suffix}" if dot else f"{path.name}.*"
    found = [path, *path.parent.glob(pattern)]
    return [p for p in found if p == path or p.name.split(".")[-2 if dot else -1].isdigit()]
