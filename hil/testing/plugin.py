"""pytest plugin: test lab scripts on the emulator, then run the same tests on a chip.

Installed with pcm-hil and registered through the ``pytest11`` entry point (name ``pcm_hil``;
``-p no:pcm_hil`` turns it off), so any project's tests can use its fixtures:

- ``pcm_chip``: an open ``pcm_hil.PcmChip`` on a fresh in-process emulated chip, closed after
  the test;
- ``pcm_resource``: the resource string of a fresh emulated chip served over TCP on 127.0.0.1
  for the test (started and stopped by the fixture), for scripts that open a chip themselves;
- ``pcm_emulator``: the ``pcm_hil.EmulatedChip`` behind both, for assertions on device state;
  None when the tests run on a chip;
- ``pcm_clock``: a ``pcm_hil.ChipClock`` on ``pcm_chip``;
- ``pcm_replay``: an open ``pcm_hil.PcmChip`` that plays back the cassette of the test's
  ``@pytest.mark.pcm_replay(PATH)`` — a session once recorded on the chip
  (``PcmChip.open(…, record=PATH)``, ``--record``, or ``--pcm-record``) — and fails the test
  where the script departs from it.

Within one test the fixtures share one emulated chip. It is seeded and shaped by the marker
``@pytest.mark.pcm(seed=…, profile=…, tiles=…, rows=…, columns=…, real_time=…, faults=…,
model=…)`` (``model``: a device-model file, ``pcm-hil emulator model``)
(the closest marker wins key by key), then by ``--pcm-seed`` / ``--pcm-profile``, then by the
defaults: profile ``tiny`` (2 tiles of 16×16), seed 0.

``--pcm-resource RESOURCE`` runs the tests on that chip (or a served emulator) instead:
``pcm_chip`` opens it, ``pcm_resource`` returns it, ``pcm_emulator`` is None and the pcm
markers' emulator settings do not apply. Tests marked ``@pytest.mark.pcm_hardware`` run only
then.

``faults=`` hands its text to ``pcm_hil.FaultPlan.parse`` and serves the chip with that
plan (``TcpServer(wire, faults=plan)``); ``pcm_chip`` then connects through the same server,
so the driver meets the faults too. A run on a chip (``--pcm-resource``) skips such tests.

Everything pcm-hil is imported only when a fixture runs: the plugin costs nothing in test
runs that do not use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pcm_hil.drivers import PcmChip
    from pcm_hil.emulator import EmulatedChip
    from pcm_hil.emulator.servers.tcp import TcpServer
    from pcm_hil.emulator.wire import WireInterface
    from pcm_hil.targets.clock import ChipClock

DEFAULT_PROFILE = "tiny"
DEFAULT_SEED = 0
DEFAULT_TIMEOUT_S = 10.0

#: The keys of ``@pytest.mark.pcm`` and the type each takes.
MARKER_KEYS: dict[str, type] = {
    "seed": int,
    "profile": str,
    "tiles": int,
    "rows": int,
    "columns": int,
    "real_time": bool,
    "faults": str,
    "model": str,
}
_GEOMETRY = ("tiles", "rows", "columns", "real_time", "model")

_PCM_MARKER = (
    "pcm(seed=0, profile='tiny', tiles=None, rows=None, columns=None, real_time=False, "
    "faults=None, model=None): the emulated chip (model: a device-model TOML file) behind pcm_chip, pcm_resource and pcm_emulator "
    "(pcm-hil); ignored with --pcm-resource"
)
_HARDWARE_MARKER = "pcm_hardware: needs a chip; skipped unless --pcm-resource is given (pcm-hil)"
_REPLAY_MARKER = (
    "pcm_replay(cassette, order='strict', complete=True): the pcm_replay fixture plays the "
    "cassette (a path relative to the test file) back as the chip; with --pcm-record, "
    "records it anew from --pcm-resource or the test's emulated chip (pcm-hil)"
)


# --- options, markers, collection ---------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pcm-hil", "pcm-hil chip fixtures (pcm_chip, pcm_resource, …)")
    group.addoption(
        "--pcm-seed",
        type=int,
        default=None,
        metavar="N",
        help=f"seed of the emulated chips (default {DEFAULT_SEED}; a test's pcm marker wins)",
    )
    group.addoption(
        "--pcm-profile",
        default=None,
        metavar="NAME",
        help=f"profile of the emulated chips: tiny, small, default, hermes (default "
        f"{DEFAULT_PROFILE}; a test's pcm marker wins)",
    )
    group.addoption(
        "--pcm-resource",
        default=None,
        metavar="RESOURCE",
        help="run on this chip or served emulator (e.g. TCPIP0::192.168.1.20::5025::SOCKET) "
        "instead of an emulator per test; runs the pcm_hardware tests",
    )
    group.addoption(
        "--pcm-record",
        action="store_true",
        help="record the pcm_replay tests' cassettes anew (from --pcm-resource, else each "
        "test's emulated chip) instead of replaying them",
    )
    group.addoption(
        "--pcm-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"I/O timeout of pcm_chip on --pcm-resource (default {DEFAULT_TIMEOUT_S:g} s)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _PCM_MARKER)
    config.addinivalue_line("markers", _HARDWARE_MARKER)
    config.addinivalue_line("markers", _REPLAY_MARKER)
    resource = config.getoption("pcm_resource", None)
    if resource is not None:
        text = resource.strip()
        if not text:
            raise pytest.UsageError("--pcm-resource: empty resource string")
        if text == "emulator" or text.startswith("emulator?"):
            raise pytest.UsageError(
                f"--pcm-resource {resource}: an in-process emulator is a new chip at every "
                "open, so a test could not see what its script did. Leave --pcm-resource out "
                "(each test gets an emulator; --pcm-profile/--pcm-seed set it up) or serve one: "
                "pcm-hil emulator serve"
            )
    profile = config.getoption("pcm_profile", None)
    if profile is not None:
        _check_profile(profile, "--pcm-profile", pytest.UsageError)


def pytest_report_header(config: pytest.Config) -> str | None:
    resource = config.getoption("pcm_resource", None)
    if resource is not None:
        return f"pcm-hil: tests run on {resource} (pcm_emulator is None, pcm_hardware tests run)"
    seed, profile = config.getoption("pcm_seed", None), config.getoption("pcm_profile", None)
    if seed is not None or profile is not None:
        return (
            f"pcm-hil: emulated chips of profile {profile or DEFAULT_PROFILE}, "
            f"seed {DEFAULT_SEED if seed is None else seed}"
        )
    return None


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Note whether a test's own call failed (``pcm_replay``'s teardown then keeps quiet about
    the exchanges it did not reach)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash[_CALL_FAILED] = True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("pcm_resource", None) is not None:
        return
    skip = pytest.mark.skip(reason="pcm_hardware: needs a chip; run with --pcm-resource RESOURCE")
    for item in items:
        if item.get_closest_marker("pcm_hardware") is not None:
            item.add_marker(skip)


# --- what a test asked for ----------------------------------------------------------------------


@dataclass(frozen=True)
class PcmSettings:
    """The emulated chip one test gets: profile, seed, ChipConfig overrides, fault plan text."""

    profile: str = DEFAULT_PROFILE
    seed: int = DEFAULT_SEED
    overrides: dict[str, Any] = field(default_factory=dict)
    faults: str | None = None

    @property
    def resource(self) -> str:
        """The ``emulator?…`` resource string that opens the same chip in-process."""
        from pcm_hil.emulator.resource import EmulatorOptions

        return EmulatorOptions(self.profile, self.seed, self.overrides).resource


def settings_for(node: pytest.Item) -> PcmSettings:
    """The settings of a test: its pcm markers (the closest wins, key by key), then the
    command line, then the defaults. A bad marker fails the test with a one-line reason."""
    values: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("pcm"))):  # farthest first
        if marker.args:
            _bad(f"takes keywords only ({', '.join(MARKER_KEYS)}), not {marker.args!r}")
        unknown = sorted(set(marker.kwargs) - set(MARKER_KEYS))
        if unknown:
            _bad(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(MARKER_KEYS)}")
        values.update({k: v for k, v in marker.kwargs.items() if v is not None})
    if isinstance(values.get("model"), os.PathLike):
        values["model"] = os.fspath(values["model"])
    if "model" in values:
        values["model"] = _model_path(node, values["model"])
    for key, value in values.items():
        wanted = MARKER_KEYS[key]
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            _bad(f"{key}={value!r}: expected {wanted.__name__}")
        if key in ("tiles", "rows", "columns") and value < 1:
            _bad(f"{key}={value!r}: must be at least 1")
    config = node.config
    profile = values.get("profile") or config.getoption("pcm_profile", None) or DEFAULT_PROFILE
    _check_profile(profile, "pcm marker: profile", None)
    seed = values.get("seed")
    if seed is None:
        seed = config.getoption("pcm_seed", None)
    return PcmSettings(
        profile=profile,
        seed=DEFAULT_SEED if seed is None else seed,
        overrides={k: values[k] for k in _GEOMETRY if k in values},
        faults=values.get("faults"),
    )


def _model_path(node: pytest.Item, model: Any) -> Any:
    """A marker's model file: a path relative to the test's own file, checked now (a bad
    file fails the test with one line)."""
    if not isinstance(model, str):
        return model  # refused with the other keys' types
    from pcm_hil.emulator.model_file import ModelFileError, load_model

    path = Path(model)
    if not path.is_absolute():
        path = Path(node.path).parent / path
    try:
        load_model(path)
    except ModelFileError as error:
        _bad(f"model={model!r}: {error}")
    return str(path)


def _bad(message: str) -> None:
    pytest.fail(f"@pytest.mark.pcm: {message}", pytrace=False)


def _check_profile(profile: str, where: str, error: type[Exception] | None) -> None:
    from pcm_hil.emulator.chip import PROFILES

    if profile not in PROFILES:
        message = f"{where} {profile!r} is not a chip profile; known: {', '.join(PROFILES)}"
        if error is None:
            pytest.fail(message, pytrace=False)
        raise error(message)


def _fault_plan(text: str):
    """``FaultPlan.parse(text)``; a bad plan fails the test with a one-line reason."""
    from pcm_hil.emulator.faults import FaultPlan

    try:
        return FaultPlan.parse(text)
    except (ValueError, TypeError, KeyError) as error:
        pytest.fail(f"@pytest.mark.pcm: faults={text!r}: {error}", pytrace=False)


# --- one test's chip ----------------------------------------------------------------------------


class PcmBench:
    """What one test's pcm fixtures share: an emulated chip (served over TCP once a fixture
    needs a resource, or from the start when faults are asked for), or the chip named by
    ``--pcm-resource``. Use ``PcmBench.emulated(settings)`` or ``PcmBench.on(resource)``."""

    def __init__(self) -> None:
        self.settings: PcmSettings | None = None
        self.hardware: str | None = None
        self.timeout_s = DEFAULT_TIMEOUT_S
        self.emulator: EmulatedChip | None = None
        self._wire: WireInterface | None = None
        self._plan: Any = None
        self._server: TcpServer | None = None

    @classmethod
    def emulated(cls, settings: PcmSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> PcmBench:
        """A fresh emulated chip as ``settings`` say."""
        from pcm_hil.emulator import WireInterface
        from pcm_hil.emulator.resource import EmulatorOptions

        bench = cls()
        bench.settings, bench.timeout_s = settings, timeout_s
        if settings.faults is not None:
            bench._plan = _fault_plan(settings.faults)
        options = EmulatorOptions(settings.profile, settings.seed, settings.overrides)
        bench.emulator = options.make_chip()
        bench._wire = WireInterface(bench.emulator)
        if bench._plan is not None:
            bench._serve()
        return bench

    @classmethod
    def on(cls, resource: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> PcmBench:
        """The chip (or served emulator) at ``resource``."""
        bench = cls()
        bench.hardware, bench.timeout_s = resource, timeout_s
        return bench

    def resource(self) -> str:
        """The chip's resource: ``--pcm-resource``, or the emulator served over TCP."""
        if self.hardware is not None:
            return self.hardware
        return self._serve().resource

    def open_chip(self) -> PcmChip:
        """A driver on the chip: in-process on the emulator (over TCP when it has faults)."""
        from pcm_hil.drivers import PcmChip
        from pcm_hil.emulator.servers.inprocess import InProcessTransport

        if self.hardware is not None:
            return PcmChip.open(self.hardware, timeout_s=self.timeout_s)
        if self._plan is not None or self._wire is None or self.settings is None:
            return PcmChip.open(self.resource(), timeout_s=self.timeout_s)
        return PcmChip(InProcessTransport(self.settings.resource, self._wire))

    def _serve(self) -> TcpServer:
        if self._server is None:
            from pcm_hil.emulator.servers.tcp import TcpServer

            if self._wire is None:
                raise RuntimeError("no emulated chip to serve")
            self._server = TcpServer(self._wire, host="127.0.0.1", faults=self._plan).start()
        return self._server

    def close(self) -> None:
        """Stop the server, if one was started."""
        if self._server is not None:
            self._server.stop()
            self._server = None


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def _pcm_bench(request: pytest.FixtureRequest):
    config = request.config
    hardware = config.getoption("pcm_resource", None)
    if hardware is not None:
        if any(m.kwargs.get("faults") for m in request.node.iter_markers("pcm")):
            pytest.skip(f"fault injection needs the emulator; this run is on {hardware}")
        bench = PcmBench.on(hardware.strip(), config.getoption("pcm_timeout"))
    else:
        bench = PcmBench.emulated(settings_for(request.node), config.getoption("pcm_timeout"))
    try:
        yield bench
    finally:
        bench.close()


@pytest.fixture
def pcm_emulator(_pcm_bench: PcmBench) -> EmulatedChip | None:
    """The ``pcm_hil.EmulatedChip`` behind ``pcm_chip`` and ``pcm_resource``, for assertions
    on device state (``pcm_emulator.devices.g_prog``, ``.read_tile(t)``, ``.now()`` …);
    None when the tests run on a chip (``--pcm-resource``)."""
    return _pcm_bench.emulator


@pytest.fixture
def pcm_chip(_pcm_bench: PcmBench):
    """An open ``pcm_hil.PcmChip``: in-process on this test's emulated chip (see the ``pcm``
    marker), or on ``--pcm-resource``. Closed after the test."""
    chip = _pcm_bench.open_chip()
    try:
        yield chip
    finally:
        chip.close()


@pytest.fixture
def pcm_resource(_pcm_bench: PcmBench) -> str:
    """A resource string for ``PcmChip.open``: this test's emulated chip served over TCP on
    127.0.0.1 (``TCPIP0::127.0.0.1::PORT::SOCKET``, stopped after the test), or
    ``--pcm-resource``. One client at a time, as on a chip."""
    return _pcm_bench.resource()


@pytest.fixture
def pcm_clock(pcm_chip: PcmChip) -> ChipClock:
    """A ``pcm_hil.ChipClock`` on ``pcm_chip``: ``wait(s)`` advances the emulator's virtual
    clock at once and waits ``s`` of real time on a real-time chip."""
    from pcm_hil.targets.clock import ChipClock

    return ChipClock(pcm_chip)


@pytest.fixture
def pcm_replay(request: pytest.FixtureRequest):
    """An open ``pcm_hil.PcmChip`` that is the cassette of the test's ``pcm_replay`` marker
    played back (``replay:PATH``): the script under test must send what was recorded, in order
    (``order='queries'`` lets pure queries swap places), or ``ReplayMismatchError`` says where
    it went another way; with ``complete=True`` (the default) the test also fails if the
    script stops before the recording does. With ``--pcm-record`` the cassette is recorded
    anew instead, from ``--pcm-resource`` or the test's emulated chip (``pcm`` marker)."""
    marker = request.node.get_closest_marker("pcm_replay")
    if marker is None or len(marker.args) != 1:
        pytest.fail(
            "pcm_replay needs @pytest.mark.pcm_replay(CASSETTE): the recording to replay",
            pytrace=False,
        )
    unknown = sorted(set(marker.kwargs) - {"order", "complete"})
    if unknown:
        pytest.fail(f"@pytest.mark.pcm_replay: unknown key(s) {', '.join(unknown)}", pytrace=False)
    path = Path(os.fspath(marker.args[0]))
    if not path.is_absolute():
        path = Path(request.node.path).parent / path
    config = request.config
    if config.getoption("pcm_record", False):
        yield from _record_cassette(request, path)
        return
    from pcm_hil.drivers import PcmChip
    from pcm_hil.drivers.transports import ResourceError

    order = marker.kwargs.get("order", "strict")
    if order not in ("strict", "queries"):
        pytest.fail(f"@pytest.mark.pcm_replay: order={order!r}: strict or queries", pytrace=False)
    if not path.exists():
        pytest.fail(
            f"@pytest.mark.pcm_replay: no cassette at {path} (record it: --pcm-record)",
            pytrace=False,
        )
    try:
        chip = PcmChip.open(
            f"replay:{path}?order={order}", timeout_s=config.getoption("pcm_timeout")
        )
    except ResourceError as error:
        pytest.fail(f"@pytest.mark.pcm_replay: {error}", pytrace=False)
    try:
        yield chip
        failed = request.node.stash.get(_CALL_FAILED, False)  # its own failure said it already
        departed = getattr(chip.transport, "departed", None)
        if departed is not None and not failed:  # the script caught the error and went on
            pytest.fail(f"the script departed from the recording:\n{departed}", pytrace=False)
        left = getattr(chip.transport, "remaining", 0)
        if marker.kwargs.get("complete", True) and left and not failed:
            pytest.fail(
                f"the script stopped with {left} recorded exchange(s) of {path.name} not replayed",
                pytrace=False,
            )
    finally:
        chip.close()


def _record_cassette(request: pytest.FixtureRequest, path: Path):
    """``pcm_replay`` under ``--pcm-record``: the test's chip — ``--pcm-resource``, or the
    emulated chip ``pcm_emulator`` shows (faults and all) — recording into a new file that
    replaces ``path`` once the test has passed (a failed recording leaves the old one)."""
    from pcm_hil.drivers import PcmChip
    from pcm_hil.drivers.transports.recording import RecordingTransport
    from pcm_hil.emulator.servers.inprocess import InProcessTransport

    bench: PcmBench = request.getfixturevalue("_pcm_bench")
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".recording")
    fresh.unlink(missing_ok=True)
    if bench.hardware is not None or bench._plan is not None or bench._wire is None:
        chip = PcmChip.open(bench.resource(), timeout_s=bench.timeout_s, record=fresh)
    else:
        assert bench.settings is not None
        transport = InProcessTransport(bench.settings.resource, bench._wire)
        chip = PcmChip(RecordingTransport.start(transport, fresh))
    try:
        yield chip
    finally:
        chip.close()
        if request.node.stash.get(_CALL_FAILED, False):
            fresh.unlink(missing_ok=True)
        else:
            os.replace(fresh, path)
