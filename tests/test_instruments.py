"""Bench-instrument drivers: the 2400-class SMU and the 81110A-class pulse generator.

Three layers: scripted-wire tests (the exact command → reply traffic, failing on any
difference or leftover), refusals that never reach the wire, and round trips through the
pyvisa-sim definitions shipped in ``drivers/sims``.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest

from pcm_hil.drivers import sims
from pcm_hil.drivers.errors import ChipDisconnectedError, ChipTimeoutError, PcmHilError
from pcm_hil.drivers.instrument import (
    Instrument,
    InstrumentDisconnectedError,
    InstrumentError,
    InstrumentRangeError,
    InstrumentReplyError,
    InstrumentTimeoutError,
    Property,
)
from pcm_hil.drivers.pulse_generator import PulseGenerator
from pcm_hil.drivers.smu import SourceMeter
from pcm_hil.protocols.smu import INSTRUMENT_DIALECT
from pcm_hil.protocols.table import Arg, CommandTable, setting

OK = '0,"No error"'
ERR = ":SYST:ERR?"
SMU_SIM = f"{sims.path('smu2400')}@sim"
PG_SIM = f"{sims.path('pulse81110')}@sim"
SMU_RESOURCE = "TCPIP0::localhost::2400::SOCKET"
PG_RESOURCE = "TCPIP0::localhost::5025::SOCKET"


# --- the scripted wire ------------------------------------------------------------------


class ScriptedTransport:
    """A wire that expects exactly ``script``: (command, reply) pairs, reply None for a
    write. Any other command, a write where a query is due (or the reverse), or a command
    past the end fails at once; ``assert_done`` fails on leftovers."""

    def __init__(self, script: list[tuple[str, str | None]]) -> None:
        self.script = deque(script)
        self.closes = 0

    def _next(self, command: str, is_query: bool) -> str | None:
        assert self.script, f"unexpected {command!r}: the script is finished"
        expected, reply = self.script.popleft()
        assert command == expected, f"sent {command!r}, expected {expected!r}"
        kind = "query" if is_query else "write"
        assert (reply is not None) == is_query, f"{command!r} sent as a {kind}"
        return reply

    def write(self, command: str) -> None:
        self._next(command, is_query=False)

    def query(self, command: str) -> str:
        reply = self._next(command, is_query=True)
        assert reply is not None
        return reply

    def close(self) -> None:
        self.closes += 1

    def assert_done(self) -> None:
        assert not self.script, f"left over, never sent: {list(self.script)}"


@contextmanager
def expected_protocol(cls: type[Instrument], script: list[tuple[str, str | None]], **kwargs):
    """An instrument of ``cls`` on a scripted wire; on exit the script must be used up."""
    transport = ScriptedTransport(script)
    instrument = cls("SCRIPTED::INSTR", transport=transport, **kwargs)
    yield instrument
    transport.assert_done()


@dataclass
class Case:
    """One property: its get (command, reply, value) and its set (value, command), with the
    queries the set's cross check makes first."""

    name: str
    get: tuple[str, str, Any]
    set: tuple[Any, str]
    before_set: list[tuple[str, str | None]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.name


SMU_CASES = [
    Case("source_function", (":SOUR:FUNC?", "VOLT", "VOLT"), ("CURR", ":SOUR:FUNC CURR")),
    Case(
        "source_voltage_V",
        (":SOUR:VOLT:LEV?", "+1.500000E+00", 1.5),
        (-2.5, ":SOUR:VOLT:LEV -2.5"),
    ),
    Case(
        "compliance_current_A",
        (":SENS:CURR:PROT?", "+1.050000E-04", 1.05e-4),
        (1e-6, ":SENS:CURR:PROT 1e-06"),
    ),
    Case(
        "current_range_auto",
        (":SENS:CURR:RANG:AUTO?", "1", True),
        (False, ":SENS:CURR:RANG:AUTO OFF"),
    ),
    Case(
        "current_range_A",
        (":SENS:CURR:RANG?", "+1.050000E-04", 1.05e-4),
        (1e-5, ":SENS:CURR:RANG 1e-05"),
    ),
    Case("nplc", (":SENS:CURR:NPLC?", "+1.000000E+00", 1.0), (0.1, ":SENS:CURR:NPLC 0.1")),
    Case("output_enabled", (":OUTP?", "0", False), (True, ":OUTP ON")),
]

PG_CASES = [
    Case(
        "high_level_V",
        (":VOLT1:HIGH?", "+2.500000E+00", 2.5),
        (3.0, ":VOLT1:HIGH 3"),
        before_set=[(":VOLT1:LOW?", "+0.000000E+00")],
    ),
    Case(
        "low_level_V",
        (":VOLT1:LOW?", "+0.000000E+00", 0.0),
        (-1.25, ":VOLT1:LOW -1.25"),
        before_set=[(":VOLT1:HIGH?", "+2.500000E+00")],
    ),
    Case("width_s", (":PULS:WIDT1?", "+1.000000E-07", 1e-7), (5e-9, ":PULS:WIDT1 5e-09")),
    Case("period_s", (":PULS:PER?", "+1.000000E-06", 1e-6), (2e-5, ":PULS:PER 2e-05")),
    Case(
        "leading_edge_s",
        (":PULS:TRAN1:LEAD?", "+2.000000E-09", 2e-9),
        (3.5e-9, ":PULS:TRAN1:LEAD 3.5e-09"),
    ),
    Case(
        "trailing_edge_s",
        (":PULS:TRAN1:TRA?", "+2.000000E-09", 2e-9),
        (1e-8, ":PULS:TRAN1:TRA 1e-08"),
    ),
    Case("output_enabled", (":OUTP1?", "1", True), (False, ":OUTP1 OFF")),
    Case("arm_source", (":ARM:SOUR?", "IMM", "IMM"), ("MAN", ":ARM:SOUR MAN")),
]

ALL_CASES = [(SourceMeter, case) for case in SMU_CASES] + [
    (PulseGenerator, case) for case in PG_CASES
]


def test_the_cases_cover_every_property():
    assert [c.name for c in SMU_CASES] == list(SourceMeter.properties())
    assert [c.name for c in PG_CASES] == list(PulseGenerator.properties())


# --- (2) scripted wire: every get and set -----------------------------------------------


@pytest.mark.parametrize(("cls", "case"), ALL_CASES, ids=lambda x: getattr(x, "__name__", str(x)))
def test_get_sends_the_query_and_parses_the_reply(cls, case):
    command, reply, value = case.get
    with expected_protocol(cls, [(command, reply)]) as instrument:
        assert getattr(instrument, case.name) == pytest.approx(value)


@pytest.mark.parametrize(("cls", "case"), ALL_CASES, ids=lambda x: getattr(x, "__name__", str(x)))
def test_set_sends_the_command_then_reads_the_error_queue(cls, case):
    value, command = case.set
    with expected_protocol(cls, [*case.before_set, (command, None), (ERR, OK)]) as instrument:
        setattr(instrument, case.name, value)


def test_channel_2_commands_carry_the_channel_number():
    script = [
        (":VOLT2:HIGH?", "+1.000000E+00"),
        (":PULS:WIDT2 1e-08", None),
        (ERR, OK),
        (":PULS:TRAN2:LEAD?", "+2.000000E-09"),
        (":OUTP2 ON", None),
        (ERR, OK),
        (":PULS:PER 1e-06", None),  # shared by the channels: no number
        (ERR, OK),
    ]
    with expected_protocol(PulseGenerator, script, channel=2) as pg:
        assert pg.high_level_V == 1.0
        pg.width_s = 10e-9
        assert pg.leading_edge_s == 2e-9
        pg.output_enabled = True
        pg.period_s = 1e-6


def test_replies_in_other_forms_parse():
    script = [
        (":OUTP?", "ON"),
        (":SENS:CURR:RANG:AUTO?", "+1.000000E+00"),
        (":SOUR:FUNC?", '"VOLTAGE"'),  # long form, quoted
        (":SOUR:VOLT:LEV?", "  +2.000000E-01\r"),
    ]
    with expected_protocol(SourceMeter, script) as smu:
        assert smu.output_enabled is True
        assert smu.current_range_auto is True
        assert smu.source_function == "VOLT"
        assert smu.source_voltage_V == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("name", "reply"),
    [("source_voltage_V", "over"), ("output_enabled", "2x"), ("source_function", "RES")],
)
def test_an_unparseable_reply_raises(name, reply):
    command = SourceMeter.properties()[name].get
    with expected_protocol(SourceMeter, [(command, reply)]) as smu:
        with pytest.raises(InstrumentReplyError, match=name):
            getattr(smu, name)


def test_measure_reads_volts_and_amps():
    with expected_protocol(SourceMeter, [(":READ?", "+1.000000E-01,-2.500000E-06\n")]) as smu:
        assert smu.measure() == (pytest.approx(0.1), pytest.approx(-2.5e-6))


def test_measure_refuses_other_elements():
    reply = "+1.000000E-01,+2.500000E-06,+9.91E+37,+1.2E+02,+4.0E+04"  # all five elements
    with expected_protocol(SourceMeter, [(":READ?", reply)]) as smu:
        with pytest.raises(InstrumentReplyError, match="VOLT,CURR"):
            smu.measure()


def test_configure_current_read_sends_the_sequence_compliance_before_level():
    script = []
    for command in [
        ":SOUR:FUNC VOLT",
        ":SENS:FUNC 'CURR'",
        ":SENS:CURR:PROT 0.0001",
        ":SENS:CURR:RANG:AUTO ON",
        ":SENS:CURR:NPLC 1",
        ":FORM:ELEM VOLT,CURR",
        ":SOUR:VOLT:LEV 0.2",
    ]:
        script += [(command, None), (ERR, OK)]
    with expected_protocol(SourceMeter, script) as smu:
        smu.configure_current_read(0.2, 1e-4, 1)


def test_configure_current_read_checks_every_value_before_sending():
    with expected_protocol(SourceMeter, []) as smu:
        with pytest.raises(InstrumentRangeError, match="nplc"):
            smu.configure_current_read(0.2, 1e-4, 50)
        with pytest.raises(InstrumentRangeError, match="source_voltage_V"):
            smu.configure_current_read(500, 1e-4, 1)


def test_configure_current_read_stops_at_the_first_error():
    script = [
        (":SOUR:FUNC VOLT", None),
        (ERR, OK),
        (":SENS:FUNC 'CURR'", None),
        (ERR, OK),
        (":SENS:CURR:PROT 1", None),
        (ERR, '-221,"Settings conflict"'),
        (ERR, OK),
    ]
    with expected_protocol(SourceMeter, script) as smu:
        with pytest.raises(InstrumentError) as raised:
            smu.configure_current_read(100, 1.0, 1)  # 1 A at 100 V: the 2400 says no
    assert raised.value.code == -221 and raised.value.command == ":SENS:CURR:PROT 1"


def test_trigger_identify_reset():
    idn = "HEWLETT-PACKARD,HP81110A,DE00000001,REV 02.00"
    script = [("*IDN?", idn), ("*RST", None), (ERR, OK), ("*TRG", None), (ERR, OK)]
    with expected_protocol(PulseGenerator, script) as pg:
        assert pg.identify() == idn
        pg.reset()
        pg.trigger()


def test_reset_empties_the_queue_and_logs_what_was_there(caplog):
    script = [
        ("*RST", None),
        (ERR, '-113,"Undefined header"'),
        (ERR, OK),
        (":OUTP ON", None),
        (ERR, OK),  # the next setting's check sees only its own errors
    ]
    with expected_protocol(SourceMeter, script) as smu, caplog.at_level(logging.WARNING):
        smu.reset()
        smu.output_enabled = True
    assert "-113" in caplog.text


def test_set_levels_orders_the_writes_so_high_stays_above_low():
    up = [  # from 1/0 to 5/4: high first
        (":VOLT1:LOW?", "+0.000000E+00"),
        (":VOLT1:LOW?", "+0.000000E+00"),
        (":VOLT1:HIGH 5", None),
        (ERR, OK),
        (":VOLT1:HIGH?", "+5.000000E+00"),
        (":VOLT1:LOW 4", None),
        (ERR, OK),
    ]
    with expected_protocol(PulseGenerator, up) as pg:
        pg.set_levels(5, 4)
    down = [  # from 5/4 to -2/-4: low first
        (":VOLT1:LOW?", "+4.000000E+00"),
        (":VOLT1:HIGH?", "+5.000000E+00"),
        (":VOLT1:LOW -4", None),
        (ERR, OK),
        (":VOLT1:LOW?", "-4.000000E+00"),
        (":VOLT1:HIGH -2", None),
        (ERR, OK),
    ]
    with expected_protocol(PulseGenerator, down) as pg:
        pg.set_levels(-2, -4)


# --- (3) refusals never reach the wire ------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (SourceMeter, "source_voltage_V", 210.5),
        (SourceMeter, "source_voltage_V", -300),
        (SourceMeter, "source_voltage_V", float("nan")),
        (SourceMeter, "source_voltage_V", float("inf")),
        (SourceMeter, "source_voltage_V", "1"),
        (SourceMeter, "source_voltage_V", True),
        (SourceMeter, "source_voltage_V", None),
        (SourceMeter, "compliance_current_A", 0.0),
        (SourceMeter, "compliance_current_A", 1.1),
        (SourceMeter, "nplc", 0.001),
        (SourceMeter, "nplc", 11),
        (SourceMeter, "source_function", "RES"),
        (SourceMeter, "source_function", 1),
        (SourceMeter, "current_range_auto", "maybe"),
        (SourceMeter, "output_enabled", 2),
        (PulseGenerator, "high_level_V", 10.5),
        (PulseGenerator, "low_level_V", -11),
        (PulseGenerator, "width_s", 0.5e-9),
        (PulseGenerator, "width_s", 2),
        (PulseGenerator, "period_s", 1e-9),
        (PulseGenerator, "period_s", 2e3),
        (PulseGenerator, "leading_edge_s", 1e-10),
        (PulseGenerator, "trailing_edge_s", 1),
        (PulseGenerator, "output_enabled", "yes"),
        (PulseGenerator, "arm_source", "BUS"),
    ],
)
def test_a_refused_setting_never_reaches_the_wire(cls, name, value):
    with expected_protocol(cls, []) as instrument:  # any command fails the test
        with pytest.raises(InstrumentRangeError) as raised:
            setattr(instrument, name, value)
    error = raised.value
    assert isinstance(error, PcmHilError) and isinstance(error, ValueError)
    assert error.name == name and error.allowed
    assert error.allowed in str(error) and "not sent" in str(error)


def test_the_range_is_in_the_error_and_the_docstring():
    with expected_protocol(PulseGenerator, []) as pg:
        with pytest.raises(InstrumentRangeError, match="allowed range 1e-09…1 s"):
            pg.width_s = 2.0
    assert "-10…10 V" in PulseGenerator.high_level_V.__doc__
    assert ":VOLT{ch}:HIGH?" in PulseGenerator.high_level_V.__doc__


def test_the_voltage_limit_is_a_class_default_an_instance_or_subclass_lowers():
    class SourceMeter2401(SourceMeter):
        voltage_limit_V = 21.0

    with expected_protocol(SourceMeter2401, []) as smu:
        with pytest.raises(InstrumentRangeError, match="-21…21 V"):
            smu.source_voltage_V = 25
    with expected_protocol(SourceMeter, [(":SOUR:VOLT:LEV 100", None), (ERR, OK)]) as smu:
        smu.source_voltage_V = 100
        smu.voltage_limit_V = 2.0  # guarding a fragile device
        with pytest.raises(InstrumentRangeError, match="-2…2 V"):
            smu.source_voltage_V = 2.5
    assert SourceMeter.voltage_limit_V == 210.0


def test_numpy_scalars_are_numbers():
    with expected_protocol(SourceMeter, [(":SENS:CURR:NPLC 0.5", None), (ERR, OK)]) as smu:
        smu.nplc = np.float32(0.5)


@pytest.mark.parametrize(
    ("name", "value", "other_query", "other_reply"),
    [
        ("high_level_V", 0.5, ":VOLT1:LOW?", "+1.000000E+00"),
        ("high_level_V", 1.0, ":VOLT1:LOW?", "+1.000000E+00"),  # equal is not above
        ("low_level_V", 3.0, ":VOLT1:HIGH?", "+2.000000E+00"),
    ],
)
def test_high_must_stay_above_low_refused_before_sending(name, value, other_query, other_reply):
    with expected_protocol(PulseGenerator, [(other_query, other_reply)]) as pg:
        with pytest.raises(InstrumentRangeError, match="not sent"):
            setattr(pg, name, value)


def test_set_levels_refuses_high_not_above_low_before_anything():
    with expected_protocol(PulseGenerator, []) as pg:
        with pytest.raises(InstrumentRangeError, match="above the low level"):
            pg.set_levels(1.0, 2.0)
        with pytest.raises(InstrumentRangeError, match="high_level_V"):
            pg.set_levels(12.0, 2.0)


def test_channel_must_be_1_or_2():
    with pytest.raises(ValueError, match="channel"):
        PulseGenerator("SCRIPTED::INSTR", channel=3, transport=ScriptedTransport([]))


# --- (4) instrument errors --------------------------------------------------------------


def test_an_instrument_error_after_a_set_raises_with_code_and_message():
    script = [(":SOUR:VOLT:LEV 1", None), (ERR, '-222,"Data out of range"'), (ERR, OK)]
    with expected_protocol(SourceMeter, script) as smu:
        with pytest.raises(InstrumentError) as raised:
            smu.source_voltage_V = 1
    error = raised.value
    assert isinstance(error, PcmHilError)
    assert error.code == -222 and error.message == "Data out of range"
    assert error.command == ":SOUR:VOLT:LEV 1" and "SCRIPTED::INSTR" in error.instrument
    assert '-222,"Data out of range"' in str(error)


def test_check_errors_drains_the_queue_and_raises_the_first():
    script = [
        (ERR, '-222,"Data out of range"'),
        (ERR, '-113,"Undefined header"'),
        (ERR, '+0,"No error"'),
    ]
    with expected_protocol(PulseGenerator, script) as pg:
        with pytest.raises(InstrumentError) as raised:
            pg.check_errors()
    assert raised.value.code == -222 and raised.value.others == ((-113, "Undefined header"),)


def test_an_error_after_trigger_raises():
    script = [("*TRG", None), (ERR, '-211,"Trigger ignored"'), (ERR, OK)]
    with expected_protocol(PulseGenerator, script) as pg:
        with pytest.raises(InstrumentError, match="Trigger ignored") as raised:
            pg.trigger()
    assert raised.value.code == -211 and raised.value.command == "*TRG"


def test_a_garbled_error_reply_raises():
    with expected_protocol(SourceMeter, [(ERR, "garbage")]) as smu:
        with pytest.raises(InstrumentReplyError, match="garbage"):
            smu.check_errors()


# --- (5) close; transport failures ----------------------------------------------------


def test_close_is_idempotent_and_the_instrument_is_then_closed():
    transport = ScriptedTransport([])
    smu = SourceMeter("SCRIPTED::INSTR", transport=transport)
    smu.close()
    smu.close()
    assert transport.closes == 1 and smu.closed
    with pytest.raises(InstrumentDisconnectedError):
        smu.query(":READ?")
    with pytest.raises(InstrumentDisconnectedError):
        smu.output_enabled = False  # validated, then refused by the closed wire


def test_the_context_manager_closes():
    transport = ScriptedTransport([("*IDN?", "X,Y,Z,1")])
    with PulseGenerator("SCRIPTED::INSTR", transport=transport) as pg:
        pg.identify()
    assert transport.closes == 1 and pg.closed
    pg.close()
    assert transport.closes == 1


def test_a_transport_without_close_is_fine():
    class Bare:
        def write(self, command: str) -> None:
            raise AssertionError(command)

        def query(self, command: str) -> str:
            raise AssertionError(command)

    smu = SourceMeter("BARE", transport=Bare())
    smu.close()
    smu.close()


@pytest.mark.parametrize(
    ("raised", "expected", "base"),
    [
        (TimeoutError("slow"), InstrumentTimeoutError, ChipTimeoutError),
        (ConnectionResetError("gone"), InstrumentDisconnectedError, ChipDisconnectedError),
        (BrokenPipeError("gone"), InstrumentDisconnectedError, ChipDisconnectedError),
    ],
)
def test_transport_failures_become_typed_errors(raised, expected, base):
    class Failing:
        def write(self, command: str) -> None:
            raise raised

        def query(self, command: str) -> str:
            raise raised

    smu = SourceMeter("FAILING", transport=Failing())
    with pytest.raises(expected) as caught:
        smu.nplc = 1
    assert isinstance(caught.value, base)
    with pytest.raises(expected):
        smu.measure()


# --- (1) the pyvisa-sim definitions -------------------------------------------------------

SMU_SIM_VALUES = {
    "source_function": ["CURR", "VOLT"],
    "source_voltage_V": [-210.0, 1.234567, 0.0, 210.0],
    "compliance_current_A": [1e-9, 1.05e-4, 1.05],
    "current_range_auto": [False, True],
    "current_range_A": [1e-6, 1e-3, 1.05],
    "nplc": [0.01, 2.5, 10.0],
    "output_enabled": [True, False],
}

PG_SIM_VALUES = {
    "high_level_V": [9.5, 2.25],
    "low_level_V": [-9.5, -0.5],
    "width_s": [1e-9, 2.5e-7, 1.0],
    "period_s": [1e-8, 1e-6, 999.0],
    "leading_edge_s": [0.8e-9, 5e-9, 0.2],
    "trailing_edge_s": [0.8e-9, 7.5e-9, 0.2],
    "output_enabled": [True, False],
    "arm_source": ["MAN", "EXT", "IMM"],
}


def approx(value: Any) -> Any:
    """Numbers to the sims' 7 significant digits (``{:+.6E}``); others exactly."""
    return pytest.approx(value, rel=1e-6) if isinstance(value, float) else value


def test_the_sim_values_cover_every_property():
    assert set(SMU_SIM_VALUES) == set(SourceMeter.properties())
    assert set(PG_SIM_VALUES) == set(PulseGenerator.properties())


@pytest.mark.parametrize("resource", [SMU_RESOURCE, "ASRL1::INSTR", "GPIB0::24::INSTR"])
@pytest.mark.parametrize("name", list(SMU_SIM_VALUES))
def test_smu_sim_round_trips(resource, name):
    with SourceMeter(resource, visa_library=SMU_SIM) as smu:
        for value in SMU_SIM_VALUES[name]:
            setattr(smu, name, value)
            assert getattr(smu, name) == approx(value)


@pytest.mark.parametrize("channel", [1, 2])
@pytest.mark.parametrize("name", list(PG_SIM_VALUES))
def test_pulse_generator_sim_round_trips(channel, name):
    with PulseGenerator(PG_RESOURCE, channel=channel, visa_library=PG_SIM) as pg:
        pg.set_levels(9.9, -9.9)  # whatever earlier tests left: room for either level
        for value in PG_SIM_VALUES[name]:
            setattr(pg, name, value)
            assert getattr(pg, name) == approx(value)


def test_pulse_generator_sim_channels_are_separate():
    with (
        PulseGenerator("GPIB0::10::INSTR", channel=1, visa_library=PG_SIM) as one,
        PulseGenerator("GPIB0::10::INSTR", channel=2, visa_library=PG_SIM) as two,
    ):
        one.width_s = 3e-9
        two.width_s = 4e-7
        one.set_levels(1.5, 0.0)
        two.set_levels(-1.0, -3.0)
        assert (one.width_s, two.width_s) == (pytest.approx(3e-9), pytest.approx(4e-7))
        assert (one.high_level_V, one.low_level_V) == (1.5, 0.0)
        assert (two.high_level_V, two.low_level_V) == (-1.0, -3.0)
        two.arm_source = "MAN"
        two.trigger()
        assert one.arm_source == "MAN"  # shared


def test_smu_sim_measures_and_identifies():
    with SourceMeter(SMU_RESOURCE, visa_library=SMU_SIM) as smu:
        assert "MODEL 2400" in smu.identify()
        smu.reset()
        smu.configure_current_read(0.2, 1e-4, 1)
        smu.output_enabled = True
        volts, amps = smu.measure()
        assert (volts, amps) == (pytest.approx(0.1), pytest.approx(2.5e-6))
        assert smu.source_voltage_V == pytest.approx(0.2)
        assert smu.compliance_current_A == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("cls", "sim", "resource", "command"),
    [
        (SourceMeter, SMU_SIM, SMU_RESOURCE, ":SOUR:VOLT:LEV 500"),  # outside the sim's specs
        (SourceMeter, SMU_SIM, SMU_RESOURCE, ":NOT:A:COMMAND"),
        (PulseGenerator, PG_SIM, PG_RESOURCE, ":VOLT1:HIGH 20"),
        (PulseGenerator, PG_SIM, PG_RESOURCE, ":ARM:SOUR BUS"),
    ],
)
def test_sim_error_queue(cls, sim, resource, command):
    with cls(resource, visa_library=sim) as instrument:
        instrument.drain_errors()
        instrument.check_errors()
        instrument.write(command)  # around the driver's checks
        with pytest.raises(InstrumentError) as raised:
            instrument.check_errors(command=command)
        assert raised.value.code == -100 and raised.value.command == command
        instrument.check_errors()  # the queue is empty again


def test_sim_no_reply_is_a_timeout():
    with SourceMeter(SMU_RESOURCE, visa_library=SMU_SIM, timeout_s=0.1) as smu:
        with pytest.raises(InstrumentTimeoutError) as raised:
            smu.query(":NOT:A:QUERY?")
        assert isinstance(raised.value, ChipTimeoutError)
        smu.drain_errors()


def test_sim_unknown_resource_cannot_be_opened():
    with pytest.raises(InstrumentDisconnectedError, match="not found"):
        SourceMeter("TCPIP0::localhost::9::SOCKET", visa_library=SMU_SIM)


def test_sim_close_is_idempotent():
    smu = SourceMeter("ASRL1::INSTR", visa_library=SMU_SIM)
    smu.close()
    smu.close()
    with pytest.raises(InstrumentDisconnectedError):
        smu.identify()


def test_sims_path():
    assert sims.names() == ["pulse81110", "smu2400"]
    assert sims.path("smu2400") == sims.path("smu2400.yaml")
    assert sims.path("pulse81110").endswith("pulse81110.yaml")
    with pytest.raises(FileNotFoundError, match="smu2400"):
        sims.path("dmm34401")


# --- the declarative machinery itself ---------------------------------------------------


THERMOSTAT = CommandTable(
    (
        *setting(
            "TEMPerature",
            "setpoint",
            "The setpoint.",
            Arg("kelvin", "float", "Setpoint.", unit="K", minimum=4, maximum="setpoint_max_K"),
            spelling=":TEMP",
        ),
        *setting(
            "MODE",
            "mode",
            "Heat or cool.",
            Arg("mode", "enum", "Mode.", choices=("HEAT", "COOL")),
            spelling=":MODE",
        ),
        *setting(
            "GAIN",
            "gain",
            "Write-only gain.",
            Arg("gain", "int", "Gain.", minimum=1, maximum=100),
            spelling=":GAIN",
        ),
        *setting(
            "LOCK",
            "locked",
            "Read-only lock state.",
            Arg("state", "bool", "Lock."),
            spelling=":LOCK",
        ),
    ),
    name="thermostat",
    dialect=INSTRUMENT_DIALECT,
)


class Thermostat(Instrument):
    """A toy instrument declared with the machinery, as a user would: a table of its own."""

    table = THERMOSTAT
    limit_attributes: ClassVar[dict[str, str]] = {"setpoint_max_K": "setpoint_max_K"}
    setpoint_max_K = 400.0

    setpoint_K = Property("setpoint")
    mode = Property("mode")
    gain = Property("gain", get=False)
    locked = Property("locked", set=False)


def test_a_user_declared_instrument():
    script = [
        (":TEMP 300", None),
        (ERR, OK),
        (":MODE COOL", None),
        (ERR, OK),
        (":GAIN 10", None),
        (ERR, OK),
        (":LOCK?", "0"),
    ]
    with expected_protocol(Thermostat, script) as thermostat:
        thermostat.setpoint_K = 300
        thermostat.mode = "cool"  # case-insensitive, sent as the table writes it
        thermostat.gain = 10
        assert thermostat.locked is False
        with pytest.raises(AttributeError, match="write-only"):
            _ = thermostat.gain
        with pytest.raises(AttributeError, match="read-only"):
            thermostat.locked = True
        with pytest.raises(InstrumentRangeError, match="1…100"):
            thermostat.gain = 500
        with pytest.raises(InstrumentRangeError, match="4…400 K"):
            thermostat.setpoint_K = 401
    assert list(Thermostat.properties()) == ["setpoint_K", "mode", "gain", "locked"]
    assert repr(Thermostat.setpoint_K) == "Property('setpoint': ':TEMP?', ':TEMP {}', unit='K')"
    assert "Allowed: 4…400 K" in Thermostat.setpoint_K.__doc__
