"""The lab CLI, ``pcm-hil``.

Errors are one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.cli import lab
from pcm_hil.drivers import PcmChip, PcmHilError
from pcm_hil.procedures.tour import run_tour
from pcm_hil.records.store import Recorder, RunStore
from pcm_hil.targets.clock import ChipClock
from pcm_hil.ui.progress import ProgressBar

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _add_resource(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resource",
        default="emulator",
        help="VISA resource (TCPIP0::host::port::SOCKET, ASRL/dev/…::INSTR), serial:/dev/…, "
        "or 'emulator' for the embedded emulator (default); 'emulator?seed=3&profile=tiny' "
        "picks its seed and shape",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="transport timeout, s")
    parser.add_argument(
        "--visa-library",
        default=None,
        help="VISA implementation for VISA resources: '@py' (pyvisa-py) or a vendor library "
        "path; by default TCPIP…::SOCKET resources use a plain socket and others pyvisa-py",
    )


def _add_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bench",
        metavar="SMU_RESOURCE,PULSE_RESOURCE",
        default=None,
        help="run on discrete devices on a bench (SMU + pulse generator, e.g. the two "
        "resources 'pcm-hil emulator bench' prints) instead of a chip; see hil/bench.py",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--dashboard", action="store_true", help="show the live dashboard")
    _add_runs(parser)


def _add_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        default=None,
        help="run store file (default: $PCM_HIL_RUNS, else ~/.local/share/pcm-hil/runs.sqlite)",
    )


def _add_devices(parser: argparse.ArgumentParser, tiles: str, devices: int | None = None) -> None:
    parser.add_argument("--tiles", default=tiles, help=f"'all' or indices a,b,… (default {tiles})")
    parser.add_argument(
        "--devices",
        type=int,
        default=devices,
        help="devices per tile, spread over it (default: "
        + ("all" if devices is None else str(devices))
        + ")",
    )


def _add_programming(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tolerance", type=float, default=0.5, help="µS (default 0.5)")
    parser.add_argument("--max-iterations", type=int, default=30)
    parser.add_argument(
        "--strategy",
        choices=("amplitude", "partial-set"),
        default="amplitude",
        help="amplitude: melt-quench current search (default); partial-set: RESET then SET steps",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcm-hil", description="Drive PCM test chips and their emulator."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tour = commands.add_parser(
        "tour", help="program a few devices, read them back, watch them drift"
    )
    _add_resource(tour)
    tour.add_argument("--tile", type=int, default=0)
    tour.add_argument(
        "--devices-per-level", type=int, default=64, help="devices per programming current"
    )
    tour.add_argument("--json", action="store_true", help="print one JSON object")

    program = commands.add_parser(
        "program", help="program-and-verify devices to target levels over 0…g_max"
    )
    _add_resource(program)
    _add_bench(program)
    _add_output(program)
    _add_devices(program, tiles="0")
    program.add_argument("--levels", type=int, default=16, help="target levels (default 16)")
    _add_programming(program)
    program.add_argument(
        "--resume",
        type=int,
        metavar="RUN",
        help="finish recorded run RUN: program only its devices that had not converged",
    )

    drift = commands.add_parser(
        "drift", help="program levels, read at log-spaced times, fit the drift exponent ν"
    )
    _add_resource(drift)
    _add_bench(drift)
    _add_output(drift)
    _add_devices(drift, tiles="0", devices=4096)
    drift.add_argument("--levels", type=int, default=8, help="target levels (default 8)")
    drift.add_argument("--start", type=float, default=1.0, help="first read, s after programming")
    drift.add_argument("--end", type=float, default=365 * 86400.0, help="last read, s (1 year)")
    drift.add_argument("--points", type=int, default=25, help="read times, log-spaced")
    drift.add_argument("--reads-per-point", type=int, default=4, help="reads averaged per time")
    drift.add_argument("--fit-from", type=float, default=20.0, help="fit reads from t0, s")
    drift.add_argument("--tolerance", type=float, default=0.5, help="programming tolerance, µS")
    drift.add_argument(
        "--resume",
        type=int,
        metavar="RUN",
        help="continue the drift measurement of recorded run RUN (cut off by a dropped "
        "connection, say): no programming, only the reads it had not taken yet",
    )

    characterize = commands.add_parser("characterize", help="device characterization")
    kinds = characterize.add_subparsers(dest="kind", required=True)
    curve = kinds.add_parser("programming-curve", help="conductance vs melt-quench current")
    curve.add_argument("--current-min", type=float, default=200.0, help="µA")
    curve.add_argument("--current-max", type=float, default=560.0, help="µA")
    curve.add_argument("--points", type=int, default=19)
    curve.add_argument("--width", type=float, default=50.0, help="pulse width, ns")
    accumulation = kinds.add_parser("accumulation", help="conductance vs partial-SET pulses")
    accumulation.add_argument("--pulses", type=int, default=20)
    accumulation.add_argument("--amplitude", type=float, default=90.0, help="µA")
    accumulation.add_argument("--width", type=float, default=50.0, help="pulse width, ns")
    noise = kinds.add_parser("read-noise", help="relative read noise vs conductance")
    noise.add_argument("--reads", type=int, default=20)
    for parser_ in (curve, accumulation, noise):
        _add_resource(parser_)
        _add_bench(parser_)
        _add_output(parser_)
        parser_.add_argument("--tile", default="0", help="tile to use (default 0)")
        parser_.add_argument("--devices", type=int, default=1024, help="devices (default 1024)")

    demo = commands.add_parser(
        "demo",
        help="the main job: program a tile, drift over a virtual year, chip-in-the-loop "
        "inference with and without compensation; dashboard live, run recorded",
    )
    _add_resource(demo)
    _add_output(demo)
    demo.add_argument("--no-dashboard", action="store_true", help="a progress bar instead")
    demo.add_argument("--network", choices=("mlp", "cnn"), default="mlp")
    demo.add_argument("--chips", type=int, default=2, help="chips for the inference experiment")

    infer = commands.add_parser(
        "infer", help="chip-in-the-loop inference on the digits: accuracy vs time after programming"
    )
    _add_resource(infer)
    _add_output(infer)
    infer.add_argument("--network", choices=("mlp", "cnn"), default="mlp")
    infer.add_argument("--chips", type=int, default=3, help="chips (emulator seeds) to average")
    infer.add_argument(
        "--times",
        type=float,
        nargs="+",
        default=[1.0, 3600.0, 86400.0, 2592000.0, 31536000.0],
        help="seconds after programming (default 1 s, 1 h, 1 d, 1 month, 1 year)",
    )
    infer.add_argument("--seed", type=int, default=0, help="training and first chip seed")
    infer.add_argument("--data-seed", type=int, default=0, help="train/test split seed")

    runs = commands.add_parser("runs", help="recorded runs: list, show, export")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_commands.add_parser("list", help="recorded runs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    show = runs_commands.add_parser("show", help="one run: its record and its events")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    export = runs_commands.add_parser("export", help="write a run to HDF5, .npz or CSV")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=("hdf5", "npz", "csv"), required=True)
    export.add_argument("--output", help="file (directory for csv); default run-ID.ext here")
    for parser_ in (listing, show, export):
        _add_runs(parser_)

    dashboard = commands.add_parser(
        "dashboard", help="watch a run live from another terminal, or look at a finished one"
    )
    dashboard.add_argument("id", type=int, nargs="?", help="run id (default: the newest)")
    dashboard.add_argument("--once", action="store_true", help="draw once and return")
    _add_runs(dashboard)

    train = commands.add_parser(
        "train",
        help="mixed-precision training of an MLP on the digits with its weights on the chip",
    )
    _add_resource(train)
    _add_output(train)
    train.add_argument("--hidden", type=int, help="hidden units of the MLP")
    train.add_argument("--epochs", type=int)
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--batch", type=int)
    train.add_argument("--seed", type=int, default=0)

    info = commands.add_parser("info", help="identity and configuration of a chip")
    _add_resource(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")

    emulator = commands.add_parser("emulator", help="serve the chip emulator")
    emulator_commands = emulator.add_subparsers(dest="emulator_command", required=True)
    serve = emulator_commands.add_parser(
        "serve",
        help="serve an emulated chip over TCP (default) or a pty serial port; prints the "
        "resource string on a line of its own",
    )
    serve.add_argument("--serial", action="store_true", help="serve on a pseudo-terminal")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5025, help="TCP port (0: any free port)")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument(
        "--profile", default="default", help="chip shape: tiny, small, default (4×256×256), hermes"
    )
    serve.add_argument("--tiles", type=int)
    serve.add_argument("--rows", type=int)
    serve.add_argument("--columns", type=int)
    serve.add_argument("--real-time", action="store_true", help="wall-clock time, not virtual")
    serve.add_argument(
        "--faults",
        default="",
        metavar="PLAN",
        help="inject faults (TCP only, except the device faults stuck_fraction and "
        "drift_factor): comma-separated key=value, e.g. 'drop_after=100,delay_s=2,delay_from=5'; "
        "keys: delay_s, delay_from, drop_after, drop_mid_block, corrupt_block, corrupt_bytes, "
        "truncate_block, error_reply=MSG:CODE, temperature_excursion=MSGS:KELVIN, reset_after, "
        "stuck_fraction, drift_factor, seed; counts are messages (or block replies) per "
        "connection, see emulator/faults.py",
    )
    bench = emulator_commands.add_parser(
        "bench",
        help="serve an emulated bench: an SMU (with the switch matrix) and a pulse generator, "
        "each on its own TCP port, wired to the same emulated PCM devices; prints two lines, "
        "'SMU <resource>' then 'PULSE <resource>' (see emulator/bench.py)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--devices", type=int, default=16, help="devices on the switch (16)")
    bench.add_argument("--smu-port", type=int, default=5100, help="SMU port (0: any free)")
    bench.add_argument("--pulse-port", type=int, default=5101, help="pulse generator port")
    bench.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("pcm-hil: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PcmHilError, OSError, ValueError, KeyError, RuntimeError) as error:
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"pcm-hil: error: {message}", file=sys.stderr)
        return EXIT_ERROR


PROCEDURES = {
    "demo": (lab.demo, lab.render_demo),
    "program": (lab.program, lab.render_program),
    "train": (lab.train, lab.render_train),
    "drift": (lab.drift, lab.render_drift),
    "characterize": (lab.characterize, lab.render_curve),
}


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "infer":
        return _report(args, lab.infer, lab.render_infer)
    if args.command in PROCEDURES:
        return _procedure(args, *PROCEDURES[args.command])
    if args.command == "runs":
        return _runs(args)
    if args.command == "dashboard":
        return _dashboard(args)
    if args.command == "tour":
        return _tour(args)
    if args.command == "info":
        return _info(args)
    return _serve(args)


def _report(args: argparse.Namespace, run, render) -> int:
    """A command that opens its own chips (one per repetition)."""
    return _recorded(args, lambda listeners, _store, _run_id: run(args, listeners), render)


def _procedure(args: argparse.Namespace, run, render) -> int:
    """A command that runs a procedure on one chip."""

    bench = getattr(args, "bench", None)
    if bench:
        args.resource = f"bench:{bench}"  # what the run records

    def on_chip(listeners, store, run_id):
        if bench:
            from pcm_hil.targets.bench import BenchTarget

            opened = BenchTarget.open(bench, timeout_s=args.timeout, visa_library=args.visa_library)
        else:
            opened = PcmChip.open(
                args.resource, timeout_s=args.timeout, visa_library=args.visa_library
            )
        with opened as chip:
            store.describe_chip(run_id, asdict(chip.identity), chip.config.protocol_version)
            for listener in listeners:
                if hasattr(listener, "set_run"):  # the dashboard: show the chip it runs on
                    listener.set_run(store.run(run_id))
            return run(chip, args, listeners)

    return _recorded(args, on_chip, render)


def _recorded(args: argparse.Namespace, body, render) -> int:
    """Run ``body(listeners, store, run_id)`` as a recorded run, with a progress bar or the
    dashboard (unless --json or --quiet), then print its summary: one JSON object, or tables.
    A run that raises is marked failed (cancelled on Ctrl-C) with what it measured kept."""
    procedure = getattr(args, "kind", None) or args.command
    store = RunStore(args.runs)
    run_id = store.start_run(
        procedure,
        resource=args.resource,
        parameters=_parameters(args),
        seed=getattr(args, "seed", None),
    )
    recorder = Recorder(store, run_id, procedure)
    display = [] if (args.json or args.quiet) else [_display(args, store.run(run_id))]
    try:
        summary = body([recorder, *display], store, run_id)
    except BaseException as error:
        if store.run(run_id).status == "running":
            if isinstance(error, KeyboardInterrupt):
                store.finish_run(run_id, "cancelled", "interrupted")
            else:
                recorder.fail(error)
        raise
    finally:
        for listener in display:
            listener.close()
        store.close()
    summary["resource"] = args.resource
    summary["run_id"] = run_id
    if args.json:
        _print_json(summary)
    else:
        render(summary, Console())
        Console(stderr=True).print(f"recorded as run {run_id}", style="dim")
    return 0 if summary.get("status", "completed") == "completed" else EXIT_INTERRUPTED


def _display(args: argparse.Namespace, info=None):
    if args.dashboard or (args.command == "demo" and not args.no_dashboard):
        from pcm_hil.ui.dashboard import LiveDashboard

        dashboard = LiveDashboard()
        dashboard.set_run(info, args.resource)
        return dashboard
    return ProgressBar()


def _parameters(args: argparse.Namespace) -> dict:
    skip = {"json", "quiet", "dashboard", "runs", "debug", "command", "timeout"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def _runs(args: argparse.Namespace) -> int:
    with RunStore(args.runs) as store:
        if args.runs_command == "list":
            runs = store.runs(limit=args.limit)
            if args.json:
                _print_json({"runs": [r.as_dict() for r in runs], "store": str(store.path)})
                return 0
            table = Table(title=f"Runs in {store.path}")
            for column in ("id", "procedure", "started", "status", "resource", "chip"):
                table.add_column(column)
            for r in runs:
                chip = f"{r.identity['model']} {r.identity['serial']}" if r.identity else ""
                table.add_row(
                    str(r.id), r.procedure, _when(r.started_at), r.status, r.resource or "", chip
                )
            Console().print(table)
            return 0
        if args.runs_command == "show":
            info = store.run(args.id)
            events = list(store.events(args.id))
            if args.json:
                _print_json(
                    {
                        "run": info.as_dict(),
                        "events": [
                            {
                                "seq": e.seq,
                                "kind": e.kind,
                                "procedure": e.procedure,
                                "done": e.done,
                                "total": e.total,
                                "wall_time": e.wall_time,
                                "data": {
                                    k: (
                                        v.tolist()
                                        if isinstance(v, np.ndarray) and v.size <= 64
                                        else f"<array {v.dtype} {list(v.shape)}>"
                                        if isinstance(v, np.ndarray)
                                        else v
                                    )
                                    for k, v in e.data.items()
                                },
                            }
                            for e in events
                        ],
                    }
                )
                return 0
            console = Console()
            header = Table(title=f"Run {info.id}: {info.procedure}", show_header=False)
            for key, value in info.as_dict().items():
                header.add_row(key, _when(value) if key.endswith("_at") and value else str(value))
            console.print(header)
            table = Table(title=f"{len(events)} events")
            for column in ("seq", "kind", "procedure", "progress", "data"):
                table.add_column(column)
            for e in events:
                shown = ", ".join(
                    f"{k}=<{v.dtype}{list(v.shape)}>"
                    if isinstance(v, np.ndarray)
                    else f"{k}={_short(v)}"
                    for k, v in e.data.items()
                )
                table.add_row(str(e.seq), e.kind, e.procedure, f"{e.done}/{e.total}", shown)
            console.print(table)
            return 0
        from pcm_hil.records.export import export_run

        path = export_run(store, args.id, args.format, args.output)
        print(path)
        return 0


def _dashboard(args: argparse.Namespace) -> int:
    from pcm_hil.ui.dashboard import attach

    with RunStore(args.runs) as store:
        if store.latest() is None:
            raise ValueError(f"no runs recorded in {store.path}")
        attach(store, args.id, follow=not args.once)
    return 0


def _when(timestamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _info(args: argparse.Namespace) -> int:
    with PcmChip.open(
        args.resource, timeout_s=args.timeout, visa_library=args.visa_library
    ) as chip:
        config = asdict(chip.config)
        config["resource"] = chip.resource
        config["clock_mode"] = chip.clock_mode()
        config["temperature_K"] = chip.temperature()
    if args.json:
        _print_json(config)
        return 0
    table = Table(title=f"{args.resource}", show_header=False)
    identity = config.pop("identity")
    table.add_row("identity", ", ".join(identity.values()))
    for key, value in config.items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0


def _tour(args: argparse.Namespace) -> int:
    console = Console(stderr=args.json)
    with PcmChip.open(
        args.resource, timeout_s=args.timeout, visa_library=args.visa_library
    ) as chip:
        clock = ChipClock(chip)
        if not clock.virtual:
            raise PcmHilError(
                f"{chip.resource} runs on a real-time clock: the tour waits a virtual year; "
                "run it on the emulator"
            )
        with console.status("programming and drifting…", spinner="dots"):
            result = run_tour(chip, clock, tile=args.tile, devices_per_level=args.devices_per_level)
        identity = chip.identity
    if args.json:
        _print_json(
            {
                "resource": args.resource,
                "identity": asdict(identity),
                "tile": result.tile,
                "times_s": result.times_s,
                "levels": [asdict(level) for level in result.levels],
            }
        )
        return 0
    console.print(
        f"[bold]{identity.manufacturer} {identity.model}[/] serial {identity.serial}, "
        f"firmware {identity.firmware} on [cyan]{args.resource}[/]"
    )
    programmed = Table(title=f"Melt-quench programming, tile {result.tile}")
    for column in ("current µA", "devices", "read-back mean µS", "std µS"):
        programmed.add_column(column, justify="right")
    for level in result.levels:
        programmed.add_row(
            f"{level.current_uA:.0f}",
            str(level.devices),
            f"{level.read_back_mean_uS:.2f}",
            f"{level.read_back_std_uS:.2f}",
        )
    console.print(programmed)
    drift = Table(title="Drift: mean conductance µS after programming (virtual time)")
    drift.add_column("current µA", justify="right")
    for t in result.times_s:
        drift.add_column(_duration(t), justify="right")
    drift.add_column("fitted ν", justify="right")
    for level in result.levels:
        drift.add_row(
            f"{level.current_uA:.0f}",
            *(f"{g:.2f}" for g in level.drift_mean_uS),
            f"{level.nu_fit:.3f}",
        )
    console.print(drift)
    return 0


def _duration(seconds: float) -> str:
    for unit, size in (("y", 3.1536e7), ("mo", 2.592e6), ("d", 86400.0), ("h", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _serve(args: argparse.Namespace) -> int:
    if args.emulator_command == "bench":
        from pcm_hil.emulator.bench import serve_forever

        serve_forever(args.devices, args.seed, args.host, args.smu_port, args.pulse_port)
        return 0
    from pcm_hil.emulator import WireInterface
    from pcm_hil.emulator.faults import FaultPlan
    from pcm_hil.emulator.resource import EmulatorOptions

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
    chip = EmulatorOptions(args.profile, args.seed, overrides).make_chip()
    wire = WireInterface(chip)
    if args.serial:
        from pcm_hil.emulator.servers.pty import PtyServer

        faults.apply_to_chip(chip)
        server = PtyServer(wire)
    else:
        from pcm_hil.emulator.servers.tcp import TcpServer

        server = TcpServer(wire, host=args.host, port=args.port, faults=faults)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    c = chip.config
    print(server.resource, flush=True)
    print(
        f"serving an emulated chip ({args.profile}: {c.tiles}×{c.rows}×{c.columns}, seed "
        f"{args.seed}, {'real-time' if c.real_time else 'virtual'} clock); Ctrl-C stops",
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


if __name__ == "__main__":
    raise SystemExit(main())
