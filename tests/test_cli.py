"""The lab CLI: the tour, info, serving the emulator, one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from drivers import PcmChip
from hil.cli import main


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
        (["tour", "--resource", "emulator?profile=tiny", "--tile", "7"], "Data out of range"),
    ],
)
def test_errors_are_one_line(argv, fragment, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err


def test_emulator_serve_prints_resource_and_serves():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil.cli",
            "emulator",
            "serve",
            "--port",
            "0",
            "--profile",
            "tiny",
            "--seed",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert re.fullmatch(r"TCPIP0::127\.0\.0\.1::\d+::SOCKET", line)
        with PcmChip.open(line, timeout_s=5) as chip:
            assert chip.config.rows == 16
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_emulator_serve_serial_prints_resource():
    process = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", "emulator", "serve", "--serial", "--profile", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert re.fullmatch(r"ASRL/dev/pts/\d+::INSTR", line)
        with PcmChip.open(line, timeout_s=5) as chip:
            assert chip.identity.model == "PCM-EMULATOR"
    finally:
        process.terminate()
        process.wait(timeout=10)
