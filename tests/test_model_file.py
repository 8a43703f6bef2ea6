"""The device model as a file: written with every parameter's unit and source, read back
exactly, refused in one line when wrong, and taken by every way of making an emulator."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.drivers import PcmChip
from pcm_hil.emulator.calibration import DEFAULT_MODEL, PcmModel
from pcm_hil.emulator.model_file import (
    ModelFileError,
    dumps_model,
    load_model,
    parameters,
    save_model,
)
from pcm_hil.procedures.drift import log_times, measure_drift
from pcm_hil.targets.clock import ChipClock

pytest_plugins = ["pytester"]


def test_the_default_model_round_trips_with_units_and_sources(tmp_path):
    path = save_model(DEFAULT_MODEL, tmp_path / "chip.toml")
    loaded = load_model(path)
    assert loaded.model == DEFAULT_MODEL and loaded.defaulted == []
    found = {p.name: p for p in parameters()}
    assert list(found) == [f.name for f in fields(PcmModel)]
    assert found["g_max_uS"].unit == "uS" and found["i_melt_uA"].unit == "uA"
    assert found["drift_t0_s"].unit == "s" and found["drift_activation_eV"].unit == "eV"
    assert found["nu_mean_slope"].unit == "1"
    assert found["g_max_uS"].source == "code" and found["set_mean_slope"].source == "derived"
    assert found["i_melt_uA"].source == "choice"
    # the lines of one formula share its documentation
    assert found["nu_mean_offset"].about == found["nu_mean_slope"].about != ""
    assert all(p.about for p in found.values())
    assert {v["source"] for v in loaded.provenance.values()} <= {"code", "derived", "choice"}


def test_edited_and_fitted_parameters_keep_their_provenance(tmp_path):
    model = DEFAULT_MODEL.with_overrides(g_max_uS=20.0, nu_mean_offset=0.03)
    fitted = {"nu_mean_offset": {"source": "fitted", "uncertainty": 0.002, "runs": [12, 13]}}
    loaded = load_model(save_model(model, tmp_path / "chip.toml", fitted))
    assert loaded.model == model
    assert loaded.provenance["g_max_uS"] == {"source": "edited"}
    assert loaded.provenance["nu_mean_offset"] == fitted["nu_mean_offset"]
    # a file of a few parameters: the rest default, and say so
    (tmp_path / "few.toml").write_text("[g_max_uS]\nvalue = 22\n")
    few = load_model(tmp_path / "few.toml")
    assert few.model == DEFAULT_MODEL.with_overrides(g_max_uS=22.0)
    assert len(few.defaulted) == len(fields(PcmModel)) - 1


@pytest.mark.parametrize(
    "text,message",
    [
        ("[g_max_uss]\nvalue = 1\n", "unknown parameter(s) g_max_uss"),
        ('[g_max_uS]\nvalue = 25\nunit = "mS"\n', "g_max_uS is in 'uS', not 'mS'"),
        ("[g_max_uS]\nvalue = nan\n", "g_max_uS = nan is not a finite number"),
        ("[g_max_uS]\nvalue = true\n", "is not a finite number"),
        ('[g_max_uS]\nvalue = "25"\n', "is not a finite number"),
        ("[g_max_uS]\nunit = 'uS'\n", "[g_max_uS] needs a value"),
        ('[g_max_uS]\nvalue = 25\nsource = "guess"\n', "source 'guess'; known: code"),
        ("format = 2\n", "model file format 2"),
        ("[g_max_uS\n", "not a TOML file"),
    ],
)
def test_a_bad_model_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ModelFileError) as raised:
        load_model(path)
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_emulator_built_from_a_model_file_follows_it(tmp_path):
    """A model whose every device drifts with ν = 0.1 (σ_ν small): the drift measured on an
    emulator built from the file is that ν."""
    model = DEFAULT_MODEL.with_overrides(
        nu_mean_low=0.1, nu_mean_high=0.1, nu_std_low=0.002, nu_std_high=0.002, g_max_uS=20.0
    )
    path = save_model(model, tmp_path / "fast.toml")
    nus = {}
    for name, resource in (
        ("file", f"emulator?profile=tiny&seed=3&model={path}"),
        ("built-in", "emulator?profile=tiny&seed=3"),
    ):
        with PcmChip.open(resource) as chip:
            targets = np.full(64, 0.4 * chip.config.g_max_uS, dtype=np.float32)
            result = measure_drift(
                chip, ChipClock(chip), 0, np.arange(64), targets, log_times(1.0, 1e6, 10)
            )
            nus[name] = (float(np.nanmean(result.nu[result.good])), chip.config.g_max_uS)
    assert nus["file"][1] == 20.0 and nus["built-in"][1] == 25.0
    assert nus["file"][0] == pytest.approx(0.1, abs=0.01)
    assert nus["built-in"][0] < 0.08  # the published μ_ν at 10 µS is ≈ 0.05
    with pytest.raises(Exception, match=r"emulator option model: .*missing.toml: cannot read"):
        PcmChip.open(f"emulator?model={tmp_path / 'missing.toml'}")


def test_the_cli_writes_checks_and_serves_a_model_file(tmp_path, capsys):
    path = tmp_path / "chip.toml"
    assert main(["emulator", "model", "--output", str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert load_model(path).model == DEFAULT_MODEL
    assert path.read_text() == dumps_model()
    assert main(["emulator", "model", "--output", str(path)]) == 1  # never over a file
    assert "exists" in capsys.readouterr().err
    path.write_text(path.read_text().replace("value = 25.0", "value = 21.5", 1))
    assert main(["emulator", "model", "--check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "g_max_uS = 21.5 uS (edited; default 25)"
    assert "1 of 45 parameters differ" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[nope]\nvalue = 1\n")
    for command in (["serve", "--port", "0"], ["bench", "--smu-port", "0", "--pulse-port", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "pcm_hil", "emulator", *command, "--model", str(bad)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and "unknown parameter(s) nope" in done.stderr


def test_the_pytest_marker_takes_a_model_file(pytester, tmp_path):
    path = save_model(DEFAULT_MODEL.with_overrides(g_max_uS=18.0), tmp_path / "chip.toml")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.pcm(model={str(path)!r})
        def test_model(pcm_chip):
            assert pcm_chip.config.g_max_uS == 18.0
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "text,message",
    [
        ("[stuck_set_fraction]\nvalue = 2.0\n", "stuck_set_fraction = 2 must lie within 0…1"),
        ("[g_max_uS]\nvalue = 1e23\n", "the conductances must be in order"),
        ("[g_max_uS]\nvalue = -5\n", "g_max_uS = -5 must be positive"),
        ("[drift_t0_s]\nvalue = 0\n", "drift_t0_s = 0 must be positive"),
    ],
)
def test_a_physically_impossible_model_is_refused(tmp_path, text, message):
    path = tmp_path / "impossible.toml"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_the_markers_model_file_is_found_beside_the_test(pytester):
    save_model(DEFAULT_MODEL.with_overrides(g_max_uS=19.0), pytester.path / "here.toml")
    pytester.makepyfile(
        """
        import pathlib
        import pytest

        @pytest.mark.pcm(model="here.toml")
        def test_relative(pcm_chip):
            assert pcm_chip.config.g_max_uS == 19.0

        @pytest.mark.pcm(model=pathlib.Path(__file__).parent / "here.toml")
        def test_path(pcm_chip):
            assert pcm_chip.config.g_max_uS == 19.0

        @pytest.mark.pcm(model="missing.toml")
        def test_missing(pcm_chip):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # fails in the fixture's setup, one line
    result.stdout.fnmatch_lines(["*@pytest.mark.pcm: model='missing.toml': *cannot read*"])
