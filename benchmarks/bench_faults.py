"""How fast the emulator's server and the driver deal with bad input and injected faults: a
script, not a test (nothing is asserted). These are the speed figures the tests used to assert
as time windows (tests/test_faults.py, tests/test_server_robustness.py); the tests now check
only what happens.

Run it from the repository root::

    python benchmarks/bench_faults.py            # rich table
    python benchmarks/bench_faults.py --json     # one JSON object on stdout
    python benchmarks/bench_faults.py --rounds 3 # fewer rounds, noisier figures

What it measures (servers on 127.0.0.1, port 0, in this process; the "tiny" chip):

1. The fuzz run of tests/test_server_robustness.py: its 10,000+ invalid and random messages
   pipelined to a ``TcpServer`` in batches of 200, each targeted case checked (its error
   code), then a fresh connection: seconds per run and fuzz cases/s. (The test asserted the
   whole fuzz test under 30 s.)
2. Fault reactions through ``PcmChip`` over TCP, against the figure that bounds each:
   - a late reply (``delay_s`` 3 s): time to ``ChipTimeoutError``, against the driver's timeout;
   - the server letting go of a client that left during that delay: time from the timed-out
     client's close to the next client's handshake done, against the server's ``busy_wait_s``
     (it would be refused busy after that);
   - a dropped connection (``drop_after``): time to ``ChipDisconnectedError``;
   - a truncated 4-byte block: time to the "not terminated by LF" ``TransportError``.
3. The same faults in process (``InProcessTransport``): time to the exception (no waiting).

Each figure is the median (and the worst) of ``--rounds`` rounds.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pcm_hil.drivers import (
    ChipDisconnectedError,
    ChipTimeoutError,
    PcmChip,
    TransportError,
)
from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.faults import FaultPlan
from pcm_hil.emulator.servers.inprocess import InProcessTransport
from pcm_hil.emulator.servers.tcp import TcpServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fuzz plan
from tests import test_server_robustness as robustness

TIMEOUT_S = 0.5  # the driver's timeout in the fault rounds
DELAY_S = 3.0  # the late reply
SEED = 77


def handshake() -> int:
    """Messages the driver sends to open a chip (counted, as tests/test_faults.py does)."""

    class Counting(WireInterface):
        executed = 0

        def execute(self, message: bytes) -> bytes | None:
            self.executed += 1
            return super().execute(message)

    wire = Counting(make_chip("tiny", seed=SEED))
    PcmChip(InProcessTransport("emulator", wire)).close()
    return wire.executed


def fuzz_round() -> dict:
    """One fuzz run as the test does it (its pipelined part): seconds and messages."""
    rng = np.random.default_rng(robustness.SEED)
    plan = robustness.fuzz_plan(rng)
    with TcpServer(WireInterface(make_chip("tiny", seed=robustness.SEED))) as server:
        started = time.perf_counter()
        client = robustness.connect(server)
        try:
            client.send(b"*CLS\n")
            for start in range(0, len(plan), 200):
                robustness.run_batch(client, plan[start : start + 200])
        finally:
            client.close()
        fresh = robustness.connect(server)
        fresh.close()
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "messages": len(plan)}


def timed(call: Callable[[], object], expected: type[BaseException]) -> float:
    """Seconds until ``call`` raises ``expected``."""
    started = time.perf_counter()
    try:
        call()
    except expected:
        return time.perf_counter() - started
    raise RuntimeError(f"{call} did not raise {expected.__name__}")


def late_reply_round(h: int) -> tuple[float, float]:
    """(time to ChipTimeoutError, time from that client's close to the next one opened)."""
    plan = FaultPlan(delay_s=DELAY_S, delay_from=h + 2)
    with TcpServer(WireInterface(make_chip("tiny", seed=SEED)), faults=plan) as server:
        chip = PcmChip.open(server.resource, timeout_s=TIMEOUT_S)
        timeout = timed(lambda: chip.set_temperature(350.0), ChipTimeoutError)
        started = time.perf_counter()
        chip.close()
        PcmChip.open(server.resource, timeout_s=TIMEOUT_S).close()
        return timeout, time.perf_counter() - started


def tcp_fault_round(plan: FaultPlan, call: Callable, expected: type[BaseException]) -> float:
    with TcpServer(WireInterface(make_chip("tiny", seed=SEED)), faults=plan) as server:
        chip = PcmChip.open(server.resource, timeout_s=TIMEOUT_S)
        try:
            return timed(lambda: call(chip), expected)
        finally:
            chip.close()


def in_process_round(plan: FaultPlan, call: Callable, expected: type[BaseException]) -> float:
    chip = PcmChip(InProcessTransport("emulator", WireInterface(make_chip("tiny")), plan))
    return timed(lambda: call(chip), expected)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "worst": max(values), "rounds": len(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    h = handshake()
    rounds = range(args.rounds)

    fuzz = [fuzz_round() for _ in rounds]
    late = [late_reply_round(h) for _ in rounds]
    drop = FaultPlan(drop_after=h)
    truncate = FaultPlan(truncate_block=1)
    delay = FaultPlan(delay_s=30.0, delay_from=h + 2)
    figures = {
        "fuzz_run_s": summary([f["seconds"] for f in fuzz]),
        "fuzz_cases_per_s": statistics.median(f["messages"] / f["seconds"] for f in fuzz),
        "late_reply_to_timeout_s": {**summary([t for t, _ in late]), "bound_s": TIMEOUT_S},
        "left_during_delay_to_next_client_s": {
            **summary([n for _, n in late]),
            "bound_s": inspect.signature(TcpServer).parameters["busy_wait_s"].default,
        },
        "drop_to_disconnected_s": summary(
            [
                tcp_fault_round(drop, lambda c: c.set_temperature(350.0), ChipDisconnectedError)
                for _ in rounds
            ]
        ),
        "truncated_block_to_error_s": summary(
            [tcp_fault_round(truncate, lambda c: c.read(0, [5]), TransportError) for _ in rounds]
        ),
        "in_process_late_reply_s": summary(
            [
                in_process_round(delay, lambda c: c.set_temperature(350.0), ChipTimeoutError)
                for _ in rounds
            ]
        ),
        "in_process_drop_s": summary(
            [
                in_process_round(drop, lambda c: c.set_temperature(350.0), ChipDisconnectedError)
                for _ in rounds
            ]
        ),
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    table = Table(
        title=f"pcm-hil faults and fuzz ({args.rounds} rounds, driver timeout {TIMEOUT_S} s)"
    )
    for column in ("figure", "median, ms", "worst, ms", "bound, ms"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for name, value in figures.items():
        if isinstance(value, dict):
            bound = value.get("bound_s")
            table.add_row(
                name.removesuffix("_s"),
                f"{value['median'] * 1e3:,.3f}",
                f"{value['worst'] * 1e3:,.3f}",
                "" if bound is None else f"{bound * 1e3:,.0f}",
            )
        else:
            table.add_row(name.replace("_per_s", "/s"), f"{value:,.0f}", "", "")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
