"""A run's labels — experiment metadata, note, tags — from the config file, $PCM_HIL_META and
the command line; recorded with the run, shown, searched and changed; the emulator's seed
and profile and the chip's identity recorded with every run; a lab script's own run
(``pcm_hil.record``); ``prune`` leaves a running run alone."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

import pcm_hil
from pcm_hil.cli.main import main
from pcm_hil.emulator.resource import EmulatorOptions
from pcm_hil.records.metadata import MetadataError
from pcm_hil.records.store import RunStore

TINY = "emulator?profile=tiny&seed=1"
#: a short recorded run: 16 devices at 2 levels on the tiny chip
PROGRAM = ["program", "--resource", TINY, "--devices", "16", "--levels", "2", "--quiet"]


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    """The config file of run labels (not written yet: none) under tmp_path, and no
    $PCM_HIL_META: the user's ~/.config never reaches these tests."""
    path = tmp_path / "pcm-hil-config.toml"
    monkeypatch.setenv("PCM_HIL_CONFIG", str(path))
    monkeypatch.delenv("PCM_HIL_META", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("COLUMNS", "240")  # rich tables on one line each
    return path


def runs(**filters) -> list:
    with RunStore(readonly=True) as store:
        return store.runs(**filters)


def only_run():
    (run,) = runs()
    return run


def cli_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


CONFIG = """
[meta]
operator = "jdoe"
sample = "W10"
die = 7
setup = "probe station 2"

[run]
note = "the second wafer"
tags = ["campaign-7"]
"""


# --- where the labels come from -----------------------------------------------------------------


def test_config_then_environment_then_command_line_key_by_key(config, monkeypatch, capsys):
    config.write_text(CONFIG)
    assert main(PROGRAM) == 0
    first = only_run()
    assert first.meta == {"operator": "jdoe", "sample": "W10", "die": 7, "setup": "probe station 2"}
    assert first.note == "the second wafer" and first.tags == ["campaign-7"]

    monkeypatch.setenv("PCM_HIL_META", "sample=W11, wafer=3,setup=")
    argv = [*PROGRAM, "--meta", "sample=W12", "--meta", "operator=", "--note", "retention"]
    assert main([*argv, "--tag", "cal", "--tag", "cal"]) == 0
    second = runs()[0]
    # the environment over the file, the command line over both; KEY= drops a default
    assert second.meta == {"sample": "W12", "die": 7, "wafer": "3"}
    assert second.note == "retention"
    assert second.tags == ["cal", "campaign-7"]


def test_record_takes_the_same_defaults_under_its_own_labels(config, monkeypatch):
    config.write_text(CONFIG)
    monkeypatch.setenv("PCM_HIL_META", "wafer=3")
    with pcm_hil.record("w10-check", meta={"sample": "W12"}, tags=["x"]) as run:
        pass
    info = only_run()
    assert info.id == run.id and info.procedure == "w10-check" and info.status == "completed"
    assert info.meta == {
        "operator": "jdoe",
        "sample": "W12",
        "die": 7,  # a TOML integer, kept as one
        "setup": "probe station 2",
        "wafer": "3",
    }
    assert info.note == "the second wafer" and info.tags == ["campaign-7", "x"]


REFUSED = [
    # (config file, $PCM_HIL_META, options, what the one line says)
    (None, None, ["--meta", "sample"], "--meta 'sample': expected key=value"),
    (None, None, ["--meta", "1die=7"], "bad key '1die'"),
    (None, None, ["--meta", "=7"], "bad key ''"),
    (None, None, ["--tag", "two words"], "bad tag 'two words'"),
    (None, "sample=W12,die", [], "$PCM_HIL_META 'die': expected key=value"),
    (None, "die 7=x", [], "bad key 'die 7'"),
    ("[meta\nsample = 'W12'\n", None, [], "not a TOML file"),
    ("[runs]\nnote = 'x'\n", None, [], "unknown setting(s) runs"),
    ("[run]\ncolour = 'blue'\n", None, [], "unknown setting(s) run.colour"),
    ('[meta]\n"bad key" = 1\n', None, [], "bad key 'bad key'"),
    ("[meta]\ndies = [7, 8]\n", None, [], "[meta] holds key = value pairs of plain values"),
    ("[run]\ntags = 'cal'\n", None, [], "run.tags is a list of words"),
    ("[run]\nnote = 3\n", None, [], "run.note is text"),
]


@pytest.mark.parametrize(
    ("text", "environment", "options", "fragment"),
    REFUSED,
    ids=[f"{r[3][:30]}" for r in REFUSED],
)
@pytest.mark.parametrize("command", ["program", "characterize"])
def test_bad_labels_are_one_line_and_record_no_run(
    text, environment, options, fragment, command, config, monkeypatch, capsys, private_run_store
):
    if text is not None:
        config.write_text(text)
    if environment is not None:
        monkeypatch.setenv("PCM_HIL_META", environment)
    accumulation = ["characterize", "accumulation", "--resource", TINY, "--pulses", "2"]
    argv = [*(PROGRAM if command == "program" else [*accumulation, "--quiet"]), *options]
    code = main(argv)
    err = capsys.readouterr().err
    assert code not in (0, None) and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcm-hil: error: "), err
    assert fragment in lines[0], err
    assert not private_run_store.exists()  # no run, not even an empty store


def test_bad_labels_refuse_a_scripts_run_before_it_is_recorded(config, private_run_store):
    config.write_text("[run]\ncolour = 'blue'\n")
    with pytest.raises(MetadataError, match="unknown setting"), pcm_hil.record("script"):
        pytest.fail("the block ran")
    config.unlink()
    with pytest.raises(MetadataError, match="bad tag"), pcm_hil.record("script", tags=["a b"]):
        pytest.fail("the block ran")
    assert not private_run_store.exists()


def test_a_scripts_metadata_keys_are_checked_as_the_command_lines_are(private_run_store):
    """``runs list --meta KEY=VALUE`` takes only keys of ``metadata.KEY``: a script's key
    outside it could be recorded but never searched for."""
    with (
        pytest.raises(MetadataError, match="bad key"),
        pcm_hil.record("script", meta={"bad key": 1}),
    ):
        pass
    assert not private_run_store.exists() or runs() == []


# --- recorded, shown, searched, changed ---------------------------------------------------------


def test_labels_are_recorded_listed_and_shown(capsys):
    argv = [*PROGRAM, "--meta", "sample=W12", "--meta", "die=7", "--note", "after anneal"]
    assert main([*argv, "--tag", "cal"]) == 0
    capsys.readouterr()
    listed = cli_json(capsys, "runs", "list")["runs"]
    assert len(listed) == 1
    assert listed[0]["meta"] == {"sample": "W12", "die": "7"}
    assert listed[0]["note"] == "after anneal" and listed[0]["tags"] == ["cal"]
    run_id = listed[0]["id"]
    shown = cli_json(capsys, "runs", "show", str(run_id))
    assert shown["run"]["meta"] == {"sample": "W12", "die": "7"}
    assert shown["run"]["tags"] == ["cal"] and shown["run"]["note"] == "after anneal"
    assert shown["summary"]["devices"] == 16
    assert main(["runs", "show", str(run_id)]) == 0
    out = capsys.readouterr().out
    assert '#cal sample=W12 die=7 "after anneal"' in out
    assert main(["runs", "list"]) == 0
    assert "#cal sample=W12 die=7" in capsys.readouterr().out


def test_runs_list_filters_by_metadata_tags_and_procedure(config, capsys):
    config.write_text("[meta]\ndie = 7\n")  # a TOML integer: found by --meta die=7
    assert main([*PROGRAM, "--meta", "sample=W12", "--tag", "cal"]) == 0  # run 1: die 7
    assert main([*PROGRAM, "--meta", "sample=W12", "--meta", "die=8"]) == 0  # run 2
    assert main([*PROGRAM, "--meta", "sample=W13", "--tag", "cal"]) == 0  # run 3: die 7
    drift = ["drift", "--resource", TINY, "--devices", "16", "--levels", "2", "--points", "6"]
    assert main([*drift, "--quiet", "--meta", "sample=W12", "--tag", "cal"]) == 0  # run 4
    capsys.readouterr()
    assert runs()[-1].meta == {"die": 7, "sample": "W12"}

    def ids(*options: str) -> list[int]:
        return [r["id"] for r in cli_json(capsys, "runs", "list", *options)["runs"]]

    assert ids("--meta", "sample=W12", "--meta", "die=7") == [4, 1]  # all must hold
    assert ids("--meta", "die=7") == [4, 3, 1]
    assert ids("--meta", "die=8") == [2]
    assert ids("--meta", "die=07") == ids("--meta", "die=7.0") == [4, 3, 1]  # as numbers
    assert ids("--meta", "sample=w12") == []  # text compares exactly
    assert ids("--meta", "operator=jdoe") == []
    assert ids("--meta", "operator=") == [4, 3, 2, 1]  # an empty value: runs without the key
    assert ids("--meta", "die=") == []
    assert ids("--tag", "cal") == [4, 3, 1]
    assert ids("--tag", "cal", "--meta", "sample=W13") == [3]
    assert ids("--tag", "cal", "--tag", "other") == []
    assert ids("--procedure", "drift") == [4]
    assert ids("--procedure", "program", "--tag", "cal", "--limit", "1") == [3]
    code = main(["runs", "list", "--meta", "die"])
    err = capsys.readouterr().err
    assert (
        code == 1
        and err.strip() == "pcm-hil: error: --meta 'die': expected key=value, e.g. sample=W12"
    )


def test_runs_tag_adds_removes_and_sets(capsys):
    assert main([*PROGRAM, "--tag", "a", "--meta", "sample=W12", "--note", "first"]) == 0
    capsys.readouterr()
    (run_id,) = [r.id for r in runs()]
    changed = cli_json(
        capsys, "runs", "tag", str(run_id), "b", "c", "--remove", "a", "--meta", "die=7",
        "--note", "second",
    )  # fmt: skip
    assert changed == {"id": run_id, "meta": {"sample": "W12", "die": "7"}, "note": "second",
                       "tags": ["b", "c"]}  # fmt: skip
    info = only_run()
    assert (info.meta, info.note, info.tags) == (
        {"sample": "W12", "die": "7"},
        "second",
        ["b", "c"],
    )
    assert main(["runs", "tag", str(run_id), "--meta", "sample=", "--remove", "c"]) == 0
    assert capsys.readouterr().out.strip() == f'run {run_id}: #b die=7 "second"'
    info = only_run()
    assert (info.meta, info.note, info.tags) == ({"die": "7"}, "second", ["b"])
    assert [r.id for r in runs(tags=["b"], meta={"die": "7"})] == [run_id]
    assert info.status == "completed"  # labels change nothing else
    assert main(["runs", "tag", str(run_id), "--meta", "1x=2"]) == 1
    assert "bad key" in capsys.readouterr().err
    assert main(["runs", "tag", "99", "x"]) == 1
    assert "no run 99" in capsys.readouterr().err


# --- the chip a run ran on ----------------------------------------------------------------------


def test_emulator_seed_and_profile_are_recorded_with_the_chips_identity(capsys):
    """Every recording command on the embedded emulator records its profile and seed (from
    ``?seed=`` when the resource says, else the default 0) and the chip's identity."""
    small = "emulator?profile=small&seed=6&tiles=16"  # the inference network fits 16 tiles
    commands = [
        ["program", "--resource", "emulator?profile=tiny&seed=3", "--devices", "16"],
        ["program", "--resource", "emulator?profile=tiny", "--devices", "16"],
        ["drift", "--resource", "emulator?profile=tiny&seed=4", "--devices", "16", "--points", "6"],
        ["characterize", "programming-curve", "--resource", "emulator?profile=tiny&seed=5",
         "--points", "3"],
        ["characterize", "read-noise", "--resource", "emulator?seed=9&profile=tiny",
         "--reads", "3"],
        ["infer", "--resource", small, "--chips", "1", "--times", "1"],
    ]  # fmt: skip
    for argv in commands:
        assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    recorded = list(reversed(runs()))
    assert [r.procedure for r in recorded] == [
        "program", "program", "drift", "programming-curve", "read-noise", "infer",
    ]  # fmt: skip
    for run, argv in zip(recorded, commands, strict=True):
        resource = argv[argv.index("--resource") + 1]
        options = EmulatorOptions.parse(resource)
        assert run.resource == resource
        assert run.parameters["emulator"]["profile"] == options.profile
        assert run.parameters["emulator"]["seed"] == run.seed == options.seed
        assert run.identity is not None and run.identity["serial"] == "EMU-0001", run.procedure
        assert run.identity["model"] == "PCM-EMULATOR"
        assert run.chip["tiles"] == options.config().tiles
        assert run.chip["columns"] == options.config().columns
    assert [r.seed for r in recorded] == [3, 0, 4, 5, 9, 6]
    assert recorded[-1].parameters["emulator"]["tiles"] == 16


def test_an_emulator_seed_not_in_the_resource_is_the_chips_not_the_commands_seed(capsys):
    """``train --seed`` seeds the weights and shuffles; the chip of ``emulator?profile=small``
    is seeded 0 (the in-process emulator's default): the run must record the chip's seed."""
    resource = "emulator?profile=small"
    argv = ["train", "--resource", resource, "--seed", "5", "--epochs", "1", "--hidden", "16"]
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
    run = only_run()
    chip_seed = EmulatorOptions.parse(resource).seed  # what PcmChip.open(resource) makes
    assert chip_seed == 0
    assert run.parameters["seed"] == 5  # the command's own --seed, as given
    assert run.parameters["emulator"] == {"profile": "small", "seed": chip_seed}
    assert run.seed == chip_seed


# --- a lab script's own run ---------------------------------------------------------------------


def test_a_script_records_program_and_drift_into_one_run(config):
    config.write_text('[meta]\noperator = "jdoe"\n')
    targets = np.tile([5.0, 15.0], 32)
    with (
        pcm_hil.PcmChip.open("emulator?profile=tiny&seed=8") as chip,
        pcm_hil.record(
            "w12-retention",
            chip=chip,
            meta={"sample": "W12", "die": 7},
            note="after anneal",
            tags=["retention"],
            parameters={"levels": 2},
        ) as run,
    ):
        programmed = pcm_hil.program_and_verify(
            chip, 0, np.arange(64), targets, listeners=run.listeners
        )
        drift = pcm_hil.measure_drift(
            chip,
            pcm_hil.ChipClock(chip),
            1,
            np.arange(64),
            targets,
            pcm_hil.log_times(1, 1e5, 8),
            listeners=run.listeners,
        )
        run.summary = {"programming": programmed.summary(), "drift": drift.summary()}
    with RunStore(readonly=True) as store:
        info, summary = store.run(run.id), store.summary(run.id)
    assert info.procedure == "w12-retention" and info.status == "completed"
    assert info.meta == {"operator": "jdoe", "sample": "W12", "die": 7}
    assert info.note == "after anneal" and info.tags == ["retention"]
    assert info.identity["serial"] == "EMU-0001" and info.chip["columns"] == 16
    assert info.seed == 8
    assert info.parameters == {"levels": 2, "emulator": {"profile": "tiny", "seed": 8}}
    assert summary["programming"]["devices"] == 64
    assert summary["drift"]["levels"][0]["nu_mean"] == pytest.approx(
        drift.summary()["levels"][0]["nu_mean"]
    )
    tables = pcm_hil.run_tables(run.id)
    assert set(tables) == {"program", "program.verify", "program-2", "program-2.verify", "drift"}
    ds = pcm_hil.load_run(run.id, "drift")
    assert ds.sizes == {"time": 8, "device": 64} and ds.attrs["meta_sample"] == "W12"
    np.testing.assert_array_equal(ds.nu.values, drift.nu.astype(np.float32))
    np.testing.assert_array_equal(ds.address.values, drift.address)
    first = pcm_hil.load_run(run.id, "program")
    np.testing.assert_array_equal(first.converged.values, programmed.converged)
    assert [r.id for r in runs(meta={"die": "7"}, tags=["retention"])] == [run.id]


def test_a_script_that_raises_fails_its_run_and_the_error_goes_on():
    with (
        pytest.raises(RuntimeError, match="probe card"),
        pcm_hil.PcmChip.open(TINY) as chip,
        pcm_hil.record("script", chip=chip) as run,
    ):
        pcm_hil.program_and_verify(chip, 0, np.arange(8), np.full(8, 10.0), listeners=run.listeners)
        raise RuntimeError("the probe card fell off")
    info = only_run()
    assert info.status == "failed" and info.error == "RuntimeError: the probe card fell off"
    with RunStore(readonly=True) as store:
        names = [e.document.name for e in store.events(run.id)]
    assert names[0] == "program.start" and names[-1] == "program.end"  # what was done is kept


def test_ctrl_c_in_a_script_cancels_its_run():
    with pytest.raises(KeyboardInterrupt), pcm_hil.record("script", tags=["t"]):
        raise KeyboardInterrupt
    info = only_run()
    assert info.status == "cancelled" and info.ended_at is not None


def test_a_script_run_without_summary_is_shown_as_its_tables(capsys):
    with pcm_hil.PcmChip.open(TINY) as chip, pcm_hil.record("sweep", chip=chip) as run:
        pcm_hil.program_and_verify(
            chip, 0, np.arange(32), np.tile([4.0, 12.0], 16), listeners=run.listeners
        )
    assert main(["runs", "show", str(run.id)]) == 0
    out = capsys.readouterr().out
    assert "Run 1: sweep" in out
    assert "program: 32 device" in out and "program.verify:" in out
    for variable in ("final_uS", "converged", "iterations", "conductance_uS"):
        assert variable in out
    assert cli_json(capsys, "runs", "show", str(run.id))["summary"] is None


# --- prune --------------------------------------------------------------------------------------


def test_prune_deletes_the_old_runs_but_never_one_running():
    """tests/test_runs_lifecycle.py prunes a store holding only a running run, and one with
    only ended runs; here both at once, with a run whose process died (killed) among them."""
    day = 86400.0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with RunStore() as store:
        ended = [store.start_run("program") for _ in range(2)]
        for run_id in ended:
            store.finish_run(run_id, "completed")
        killed = store.start_run("drift")
        store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead.pid, killed))
        recent = store.start_run("program")
        store.finish_run(recent, "completed")
        running = store.start_run("drift")  # this process is recording it
        now = time.time()
        for run_id in (*ended, killed, running):
            store.db.execute(
                "UPDATE runs SET started_at = ? WHERE id = ?", (now - 40 * day, run_id)
            )
        assert store.run(killed).status == "killed" and store.run(running).status == "running"
        assert store.prune(30 * day) == [*ended, killed]
        assert [r.id for r in store.runs()] == [running, recent]
        assert store.run(running).status == "running"
