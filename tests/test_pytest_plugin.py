"""The pytest plugin (hil/testing/plugin.py), as a user meets it: the example of docs/testing.md
run by pytest in a folder outside the repository, on the emulator and on a served chip; and
the markers, options and fault-injection hook checked with pytester."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pcm_hil.emulator import WireInterface, make_chip
from pcm_hil.emulator.servers.tcp import TcpServer

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"
RUN_TIMEOUT_S = 120


def docs_example() -> dict[str, str]:
    """The files of docs/testing.md's example: python blocks whose first line is ``# NAME.py``."""
    blocks = re.findall(r"```python\n# (\w+\.py)\n(.*?)```", DOCS.read_text(), re.DOTALL)
    return {name: f"# {name}\n{body}" for name, body in blocks}


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m pytest`` in ``folder`` as a user runs it: no repository on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """docs/testing.md's lab script and its tests, alone in a temporary folder."""
    files = docs_example()
    assert set(files) == {"lab_levels.py", "test_lab_levels.py"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the user's project root
    repository = DOCS.parents[1]
    assert repository not in tmp_path.parents and tmp_path != repository
    return tmp_path


def test_docs_example_passes_on_the_emulator(example: Path):
    result = run_pytest(example)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "2 passed, 1 skipped" in output
    assert "pcm_hardware: needs a chip; run with --pcm-resource RESOURCE" in output


def test_docs_example_runs_on_a_served_chip(example: Path):
    """--pcm-resource: the same tests drive a chip this test serves; pcm_hardware tests run."""
    chip = make_chip("tiny", seed=11)
    fresh = chip.devices.g_prog.copy()
    with TcpServer(WireInterface(chip)) as server:
        result = run_pytest(example, "--pcm-resource", server.resource)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "3 passed" in output
        assert server.connections >= 3  # the script, the drift test, the self-test
    assert not np.array_equal(chip.devices.g_prog[0, :64], fresh[0, :64])  # it programmed them


# --- markers and options (pytester, in-process) ----------------------------------------------


def test_marker_sets_seed_and_geometry(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import numpy as np
        import pytest
        from pcm_hil.emulator import make_chip

        pytestmark = pytest.mark.pcm(profile="small", seed=5)

        def test_module_marker(pcm_chip, pcm_emulator):
            assert (pcm_chip.config.tiles, pcm_chip.config.rows) == (4, 64)
            assert pcm_chip.resource == "emulator?profile=small&seed=5"
            same = make_chip("small", 5)
            assert np.array_equal(pcm_emulator.devices.i_mid, same.devices.i_mid)

        @pytest.mark.pcm(seed=3, tiles=2, rows=16, columns=8)
        def test_closest_marker_wins_key_by_key(pcm_chip, pcm_emulator):
            c = pcm_chip.config
            assert (c.tiles, c.rows, c.columns) == (2, 16, 8)
            assert pcm_emulator.config.rows == 16
            assert pcm_chip.resource == (
                "emulator?profile=small&seed=3&tiles=2&rows=16&columns=8"
            )
            same = make_chip("small", 3, tiles=2, rows=16, columns=8)
            assert np.array_equal(pcm_emulator.devices.i_mid, same.devices.i_mid)

        @pytest.mark.pcm(real_time=True)
        def test_real_time(pcm_clock):
            assert not pcm_clock.virtual
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_options_set_the_session_default(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        def test_options(pcm_chip):
            assert pcm_chip.resource == "emulator?profile=small&seed=9"

        @pytest.mark.pcm(profile="tiny")
        def test_marker_beats_options(pcm_chip):
            assert pcm_chip.resource == "emulator?profile=tiny&seed=9"
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--pcm-profile", "small", "--pcm-seed", "9"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["pcm-hil: emulated chips of profile small, seed 9"])


def test_defaults_and_fixtures_share_one_chip(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import numpy as np
        import pytest
        from pcm_hil.drivers import ChipDisconnectedError, PcmChip

        served = []

        def test_shared(pcm_chip, pcm_resource, pcm_emulator, pcm_clock):
            assert pcm_chip.resource == "emulator?profile=tiny&seed=0"
            assert pcm_resource.startswith("TCPIP0::127.0.0.1::")
            served.append(pcm_resource)
            with PcmChip.open(pcm_resource, timeout_s=5) as script_chip:
                script_chip.pulse(1, [3, 4], 300.0, 50.0)
                pcm_clock.wait(3600)
                assert script_chip.time() == 3600
            assert pcm_emulator.now() == 3600
            assert pcm_emulator.devices.g_prog[1, 3] > 1  # melt-quenched from RESET
            g = pcm_chip.read(1, [3, 4])
            assert np.all(g > 1)

        def test_server_stopped_after_the_test():
            with pytest.raises(ChipDisconnectedError):
                PcmChip.open(served[0], timeout_s=1)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_hardware_marker_and_pcm_resource(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.pcm_hardware
        @pytest.mark.pcm(profile="small")  # ignored on a chip
        def test_on_chip(pcm_chip, pcm_resource, pcm_emulator):
            assert pcm_emulator is None
            assert pcm_resource.startswith("TCPIP0::127.0.0.1::")
            assert pcm_chip.resource == pcm_resource
            assert pcm_chip.config.rows == 16

        def test_anywhere(pcm_chip):
            assert pcm_chip.self_test()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*pcm_hardware: needs a chip; run with --pcm-resource*"])
    with TcpServer(WireInterface(make_chip("tiny", seed=2))) as server:
        result = pytester.runpytest("-p", "no:cacheprovider", "--pcm-resource", server.resource)
        header = f"pcm-hil: tests run on {server.resource} (pcm_emulator is None, *"
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([header])


def test_bad_markers_and_options_are_explained(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.pcm(sead=3)
        def test_typo(pcm_chip): pass

        @pytest.mark.pcm(profile="huge")
        def test_profile(pcm_chip): pass

        @pytest.mark.pcm(rows="16")
        def test_type(pcm_chip): pass

        @pytest.mark.pcm(3)
        def test_positional(pcm_chip): pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.pcm: unknown key(s) sead; known: seed, profile, *",
            "*'huge' is not a chip profile; known: tiny, small, default, hermes*",
            "*@pytest.mark.pcm: rows='16': expected int*",
            "*@pytest.mark.pcm: takes keywords only*",
        ],
        consecutive=False,
    )
    result = pytester.runpytest("--pcm-resource", "emulator?profile=tiny")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*an in-process emulator is a new chip at every open*"])
    result = pytester.runpytest("--pcm-profile", "huge")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# --- fault injection ---------------------------------------------------------------------------

FAULTS_TEST = """
import pytest

@pytest.mark.pcm(faults="drop-after 3")
def test_faulty(pcm_chip, pcm_resource, pcm_emulator):
    assert pcm_chip.resource == pcm_resource  # the driver goes through the faulty server
    assert pcm_emulator is not None
"""


def test_fault_plans_bad_and_on_a_chip(pytester: pytest.Pytester):
    """A plan that does not parse fails its test with one line naming the fault; on a chip
    (``--pcm-resource``) every test asking for faults is skipped, with the reason."""
    pytester.makepyfile(
        FAULTS_TEST
        + """
@pytest.mark.pcm(faults="nonsense=1")
def test_bad_plan(pcm_chip): pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)  # "drop-after 3" is no key=value either
    result.stdout.fnmatch_lines(
        [
            "*faults='drop-after 3': fault 'drop-after 3' is not key=value*",
            "*faults='nonsense=1': unknown fault 'nonsense'*",
        ]
    )

    with TcpServer(WireInterface(make_chip("tiny"))) as server:
        result = pytester.runpytest(
            "-p", "no:cacheprovider", "-rs", "--pcm-resource", server.resource
        )
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*fault injection needs the emulator; this run is on TCPIP0*"])


def test_real_fault_plan_reaches_the_emulator(pytester: pytest.Pytester):
    """Device faults show in pcm_emulator and connection faults hit a script that opens
    pcm_resource."""
    pytester.makepyfile(
        """
        import numpy as np
        import pytest
        from pcm_hil.drivers import ChipDisconnectedError, PcmChip

        @pytest.mark.pcm(faults="stuck_fraction=0.5,seed=1")
        def test_device_faults(pcm_chip, pcm_emulator):
            assert pcm_chip.resource.startswith("TCPIP0::127.0.0.1::")
            assert np.count_nonzero(pcm_emulator.devices.stuck) / pcm_emulator.devices.stuck.size > 0.4

        @pytest.mark.pcm(faults="drop_after=0")
        def test_connection_faults(pcm_resource):
            with pytest.raises(ChipDisconnectedError):
                PcmChip.open(pcm_resource, timeout_s=5)
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
