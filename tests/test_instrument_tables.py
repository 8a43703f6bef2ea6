"""The bench drivers and the emulated bench stand on the same command tables: every driver
setting is checked here against the row the emulated instrument serves, over TCP.

For each setting: the command the driver sends is the row the emulator dispatches; a value
at each bound (the emulator's limits given to the driver) passes the driver's checks and is
accepted by the instrument; a value just outside is refused by the driver before sending,
and the same value sent raw is refused by the instrument with the same code (-222). So the
two cannot disagree on a range without this test failing. Every setting row of the tables is
driven by a driver property or by a named driver method.
"""

from __future__ import annotations

import pytest

from pcm_hil.drivers.instrument import InstrumentError, InstrumentRangeError, Property
from pcm_hil.drivers.pulse_generator import PulseGenerator
from pcm_hil.drivers.smu import SourceMeter
from pcm_hil.emulator.bench import EmulatedBench
from pcm_hil.protocols.codec import short_mnemonic

#: Setting rows the drivers drive through a method rather than a property, and which.
BY_METHOD = {
    "set_sense_function": "SourceMeter.configure_current_read",
    "set_elements": "SourceMeter.configure_current_read",
    "route_close": "SourceMeter.route",
    "route_open_all": "SourceMeter.disconnect_all",
    "advance": "BenchTarget.advance",
    "trigger": "PulseGenerator.trigger",
    "trigger_immediate": "(the same as *TRG, which PulseGenerator.trigger sends)",
}


@pytest.fixture(scope="module")
def bench():
    bench = EmulatedBench(devices=4, seed=2)
    with bench.serve() as server:
        bench.server = server
        yield bench


def driver_for(bench, key):
    """(driver, emulated instrument), the driver given the emulator's own limits so that it
    checks the very bounds the instrument serves."""
    if key == "smu":
        driver, device = SourceMeter(bench.server.smu.resource, timeout_s=2), bench.smu
    else:
        driver, device = (
            PulseGenerator(bench.server.pulse.resource, timeout_s=2),
            bench.pulse_generator,
        )
    for name, attribute in driver.limit_attributes.items():
        setattr(driver, attribute, device.limits[name])
    return driver, device


def settings():
    for key, cls in (("smu", SourceMeter), ("pulse", PulseGenerator)):
        for name, prop in cls.properties().items():
            if prop.setting_row is not None:
                yield pytest.param(key, name, id=f"{cls.__name__}.{name}")


@pytest.mark.parametrize(("key", "name"), list(settings()))
def test_driver_setting_agrees_with_the_served_row(bench, key, name):
    driver, device = driver_for(bench, key)
    prop: Property = type(driver).properties()[name]
    arg = prop.arg
    channel = driver.suffix or ""
    try:
        # the commands the driver sends are the rows the instrument dispatches
        sent = prop.set.format("", ch=channel).split(" ")[0]
        assert device.table.resolve_header(sent, device.limits)[0] is prop.setting_row
        query = prop.get.format(ch=channel)
        assert device.table.resolve_header(query, device.limits)[0] is prop.query_row
        if arg.kind == "float":
            low, high = arg.bounds(device.limits)
            for value in _inside(name, low, high, device):
                setattr(driver, name, value)  # accepted by both: no error raised
                assert getattr(driver, name) == pytest.approx(value)
            for value in (low - abs(low) * 0.01 - 1e-12, high + abs(high) * 0.01 + 1e-12):
                before = device.messages
                with pytest.raises(InstrumentRangeError):
                    setattr(driver, name, value)
                assert device.messages == before, "a refused setting reached the instrument"
                driver.write(f"{sent} {value!r}")  # around the driver: the instrument refuses
                with pytest.raises(InstrumentError) as raised:
                    driver.check_errors()
                assert raised.value.code == -222
        elif arg.kind == "bool":
            if key == "pulse":
                driver.arm_source = "MAN"  # the emulator pulses only on *TRG
            for value in (True, False):
                setattr(driver, name, value)
                assert getattr(driver, name) is value
        else:
            for choice in map(short_mnemonic, arg.choices):
                try:
                    setattr(driver, name, choice)
                except InstrumentError as error:  # the emulator refuses what it cannot do
                    assert error.code in prop.setting_row.errors
                else:
                    assert getattr(driver, name) == choice
    finally:
        driver.close()
        device.reset_settings()


def _inside(name, low, high, device):
    """Values within [low, high] that the instrument's cross-setting rules also allow (the
    high level above the low level and the reverse)."""
    if name == "high_level_V":
        return [high, device.settings["low_level"] + 0.01]
    if name == "low_level_V":
        return [low, min(high, device.settings["high_level"] - 0.01)]
    return [low, high]


def test_every_setting_row_is_driven():
    driven = {
        prop.setting_row.handler
        for cls in (SourceMeter, PulseGenerator)
        for prop in cls.properties().values()
        if prop.setting_row is not None
    }
    for cls in (SourceMeter, PulseGenerator):
        for command in cls.table:
            if command.is_query or command.is_common:
                continue
            assert command.handler in driven or command.handler in BY_METHOD, command.header
