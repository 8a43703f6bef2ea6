"""The lab CLI: the tour, info, serving the emulator, one-line errors."""

from __future__ import annotations

import json
import re

import pytest

from pcm_hil.cli.main import main
from pcm_hil.drivers import PcmChip
from pcm_hil.testing.serve import served_emulator


def test_tour_json_shows_programming_and_drift(capsys):
    assert (
        main(
            [
                "tour",
                "--resource",
                "emulator?profile=tiny&seed=3",
                "--devices-per-level",
                "16",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    levels = result["levels"]
    assert [level["current_uA"] for level in levels] == [230.0, 280.0, 330.0, 380.0]
    means = [level["read_back_mean_uS"] for level in levels]
    assert means == sorted(means, reverse=True)  # the programming curve falls with current
    for level in levels:
        drift = level["drift_mean_uS"]
        assert drift == sorted(drift, reverse=True)
        assert 0.03 < level["nu_fit"] < 0.12


def test_tour_prints_tables(capsys):
    assert main(["tour", "--resource", "emulator?profile=tiny", "--devices-per-level", "8"]) == 0
    out = capsys.readouterr().out
    assert "Melt-quench programming" in out and "fitted ν" in out and "1 y" in out


def test_info_json(capsys):
    assert main(["info", "--resource", "emulator?profile=tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["tiles"], info["rows"], info["columns"]) == (2, 16, 16)
    assert info["clock_mode"] == "VIRT"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["info", "--resource", "bogus"], "cannot tell the transport"),
        (["info", "--resource", "emulator?colour=red"], "unknown emulator option"),
        (["tour", "--resource", "emulator?profile=tiny", "--tile", "7"], "--tile 7 outside 0…1"),
    ],
)
def test_errors_are_one_line(argv, fragment, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err


def test_emulator_serve_prints_resource_and_serves():
    with served_emulator("--profile", "tiny", "--seed", "5") as served:
        assert re.fullmatch(r"TCPIP0::127\.0\.0\.1::\d+::SOCKET", served.resource)
        with PcmChip.open(served.resource, timeout_s=5) as chip:
            assert chip.config.rows == 16
    assert served.process.returncode == 0


def test_emulator_serve_serial_prints_resource():
    with served_emulator("--serial", "--profile", "tiny") as served:
        assert re.fullmatch(r"ASRL/dev/pts/\d+::INSTR", served.resource)
        with PcmChip.open(served.resource, timeout_s=5) as chip:
            assert chip.identity.model == "PCM-EMULATOR"
    assert served.process.returncode == 0


def _json_of(argv, capsys) -> dict:
    code = main(argv)
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object, nothing else on stdout
    return code, json.loads(out)


def test_program_json(capsys):
    code, result = _json_of(
        ["program", "--resource", "emulator?profile=small&seed=1", "--levels", "4", "--json"],
        capsys,
    )
    assert code == 0
    for key in (
        "devices",
        "converged_fraction",
        "iterations_mean",
        "iterations_p99",
        "error_std_uS",
        "elapsed_s",
    ):
        assert isinstance(result[key], (int, float)), key
    assert result["devices"] == 64 * 64
    assert result["converged_fraction"] > 0.97
    assert [round(level["target_uS"], 3) for level in result["levels"]] == [
        3.125,
        9.375,
        15.625,
        21.875,
    ]
    for level in result["levels"]:
        assert {"target_uS", "error_std_uS", "converged_fraction"} <= set(level)


def test_program_partial_set_strategy_on_two_tiles(capsys):
    code, result = _json_of(
        [
            "program",
            "--resource",
            "emulator?profile=small",
            "--tiles",
            "0,1",
            "--devices",
            "256",
            "--levels",
            "2",
            "--strategy",
            "partial-set",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and result["devices"] == 512 and result["strategy"] == "partial-set"


def test_drift_json(capsys):
    code, result = _json_of(
        [
            "drift",
            "--resource",
            "emulator?profile=small&seed=2",
            "--devices",
            "1024",
            "--levels",
            "4",
            "--points",
            "12",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and isinstance(result["elapsed_s"], float)
    assert len(result["levels"]) == 4
    for level in result["levels"]:
        assert {"target_uS", "nu_mean", "nu_std", "n_devices"} <= set(level)
        assert 0.04 < level["nu_mean"] < 0.12 and level["n_devices"] > 200


@pytest.mark.parametrize("kind", ["programming-curve", "accumulation", "read-noise"])
def test_characterize_json(kind, capsys):
    code, result = _json_of(
        [
            "characterize",
            kind,
            "--resource",
            "emulator?profile=small",
            "--devices",
            "512",
            "--json",
        ],
        capsys,
    )
    assert code == 0 and result["kind"] == kind and len(result["points"]) > 3


def test_program_tables_and_progress(capsys):
    assert main(["program", "--resource", "emulator?profile=small", "--levels", "4"]) == 0
    out = capsys.readouterr().out
    assert "Program-and-verify" in out and "published σ" in out


def test_bad_tiles_is_one_line(capsys):
    assert main(["program", "--resource", "emulator?profile=small", "--tiles", "9", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside 0…3" in err


@pytest.mark.parametrize(
    ("argv", "nearest"),
    [
        (["progam"], "program"),
        (["runs", "lsit"], "list"),
        (["characterize", "accumulaton"], "accumulation"),
        (["program", "--strategy", "amplitud"], "amplitude"),
    ],
)
def test_a_mistyped_command_or_choice_names_the_nearest(argv, nearest, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(f"did you mean '{nearest}'?")


def test_nothing_near_is_suggested_for_nonsense(capsys):
    with pytest.raises(SystemExit):
        main(["xyz"])
    assert "did you mean" not in capsys.readouterr().err
