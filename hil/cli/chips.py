"""Opening what a command runs on: the chip named by ``--resource``, a bench of discrete
instruments (``--bench``), and the chips of a multi-chip experiment (``chip_opener``)."""

from __future__ import annotations

import argparse

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
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}.{index}.{suffix}" if dot and "/" not in suffix else f"{path}.{index}"


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
    ``shared`` open chip, if given: one client at a time). ``record``: a chip opened here
    records to ``indexed_cassette(record, first + i)``; a ``replay:FILE`` resource plays chip
    i from that cassette of FILE when there is one (the chips were the emulator's, each its
    own), else as the resource says (one chip, one cassette)."""
    from pathlib import Path

    from pcm_hil.emulator.resource import EmulatorOptions, is_emulator

    def open_chip(index: int):
        cassette = indexed_cassette(record, first + index) if record else None
        if is_emulator(resource):
            options = EmulatorOptions.parse(resource, default_seed=seed)
            fresh = options.with_seed(options.seed + index).resource
            return PcmChip.open(fresh, timeout_s=timeout_s, record=cassette)
        if resource.startswith("replay:"):
            path, sep, options_text = resource.removeprefix("replay:").partition("?")
            own = indexed_cassette(path, first + index)
            if own != path and Path(own).exists():
                return PcmChip.open("replay:" + own + sep + options_text, timeout_s=timeout_s)
        if shared is not None:
            return Borrowed(shared)
        return PcmChip.open(
            resource, timeout_s=timeout_s, visa_library=visa_library, record=cassette
        )

    return open_chip
