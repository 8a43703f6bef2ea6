"""``pcm-hil emulator serve`` and ``pcm-hil emulator bench``: serve the emulator until Ctrl-C
(or SIGTERM), its resource string(s) on stdout, what it does on stderr (faults that fire,
connections refused or timed out)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pcm_hil.emulator.servers.pty import PtyServer
    from pcm_hil.emulator.servers.tcp import TcpServer


def emulator(args: argparse.Namespace) -> int:
    """``pcm-hil emulator serve|bench|model``."""
    logging.basicConfig(level=logging.INFO, format="pcm-hil: %(message)s", stream=sys.stderr)
    if args.emulator_command == "model":
        return model_file(args)
    if args.emulator_command == "bench":
        return serve_bench(args)
    return serve_chip(args)


def model_file(args: argparse.Namespace) -> int:
    """``pcm-hil emulator model``: write the default model (``--output``, else stdout), or
    ``--check FILE``: read one and print what it changes."""
    from pcm_hil.emulator.calibration import DEFAULT_MODEL
    from pcm_hil.emulator.model_file import dumps_model, load_model, parameters

    if args.check is not None:
        found = load_model(args.check)
        changed = [
            (p, getattr(found.model, p.name))
            for p in parameters()
            if getattr(found.model, p.name) != getattr(DEFAULT_MODEL, p.name)
        ]
        for p, value in changed:
            source = found.provenance.get(p.name, {}).get("source", "edited")
            default = getattr(DEFAULT_MODEL, p.name)
            print(f"{p.name} = {value:g} {p.unit} ({source}; default {default:g})")
        print(
            f"{args.check}: {len(changed)} of {len(parameters())} parameters differ from the "
            f"default; {len(found.defaulted)} not in the file (default)",
            file=sys.stderr,
        )
        return 0
    from pcm_hil.cli.output import print_new_file

    return print_new_file(dumps_model(), args.output)


def device_model(path: str | None):
    """The model of ``--model FILE`` (the default without one); one line if the file is bad."""
    from pcm_hil.emulator.calibration import DEFAULT_MODEL
    from pcm_hil.emulator.model_file import load_model

    return load_model(path).model if path is not None else DEFAULT_MODEL


def serve_bench(args: argparse.Namespace) -> int:
    """An emulated SMU and pulse generator, each on its own TCP port."""
    from pcm_hil.emulator.bench import serve_forever

    serve_forever(
        args.devices,
        args.seed,
        args.host,
        args.smu_port,
        args.pulse_port,
        allow=args.allow,
        model=device_model(args.model),
    )
    return 0


def serve_chip(args: argparse.Namespace) -> int:
    """An emulated chip over TCP, or on a pseudo-terminal (``--serial``), with the faults of
    ``--faults`` injected; each fault that fires is told on stderr."""
    from pcm_hil.emulator import WireInterface
    from pcm_hil.emulator.faults import FaultPlan
    from pcm_hil.emulator.resource import EmulatorOptions
    from pcm_hil.protocols.limits import ServingLimits

    faults = FaultPlan.parse(args.faults)
    if args.serial and faults.connection_faults:
        raise ValueError(
            "connection faults need the TCP server; with --serial only stuck_fraction and "
            "drift_factor apply"
        )
    overrides = {
        key: getattr(args, key)
        for key in ("tiles", "rows", "columns")
        if getattr(args, key) is not None
    }
    if args.real_time:
        overrides["real_time"] = True
    if args.model is not None:
        overrides["model"] = args.model
    chip = EmulatorOptions(args.profile, args.seed, overrides).make_chip()
    limits = ServingLimits(
        partial_timeout_s=args.partial_timeout,
        idle_timeout_s=args.idle_timeout,
        send_stall_timeout_s=args.stall_timeout,
    )
    wire = WireInterface(chip, serving=limits)
    server: PtyServer | TcpServer
    if args.serial:
        from pcm_hil.emulator.servers.pty import PtyServer

        faults.apply_to_chip(chip)
        server = PtyServer(wire)
    else:
        from pcm_hil.emulator.servers.tcp import TcpServer

        server = TcpServer(wire, host=args.host, port=args.port, faults=faults, allow=args.allow)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    c = chip.config
    print(server.resource, flush=True)
    print(
        f"serving an emulated chip ({args.profile}: {c.tiles}×{c.rows}×{c.columns}, seed "
        f"{args.seed}, {'real-time' if c.real_time else 'virtual'} clock, "
        f"{'model ' + args.model if args.model else 'the built-in model'}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    if faults:
        print(f"injecting faults: {faults}", file=sys.stderr, flush=True)
    events = getattr(server, "fault_events", [])
    reported = 0

    def report() -> None:  # each fault that fired, once, on stderr
        nonlocal reported
        for event in events[reported:]:
            print(event, file=sys.stderr, flush=True)
        reported = len(events)

    try:
        while not stop.wait(0.5):
            report()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        report()
    return 0
