"""The characterization campaign: five measurements on devices of their own, each its own
run, labelled as one campaign, each loading as the data a fit needs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pcm_hil
from pcm_hil.cli.main import main
from pcm_hil.records.store import RunStore
from pcm_hil.twin.campaign import MEASUREMENTS, Campaign, device_groups, run_campaign


@pytest.mark.parametrize("tiles", [4, 2])
def test_each_measurement_has_devices_of_its_own(tiles):
    groups = device_groups(tiles, 256, 64, 4)
    used = {(tile, int(a)) for tile, addresses in groups for a in addresses}
    assert len(used) == sum(addresses.size for _, addresses in groups) == 4 * 64
    assert {tile for tile, _ in groups} == ({0, 1, 2, 3} if tiles == 4 else {0})


def test_the_campaign_records_five_runs_a_fit_can_load(capsys):
    command = ["characterize", "campaign", "--resource", "emulator?profile=small&seed=4"]
    assert (
        main([*command, "--devices", "64", "--drift-end", "1e5", "--json", "--meta", "wafer=W3"])
        == 0
    )
    found = json.loads(capsys.readouterr().out)
    runs = found["runs"]
    assert list(runs) == list(MEASUREMENTS) and found["campaign"] == runs["melt-threshold"]
    with RunStore(readonly=True) as store:
        listed = store.runs(meta={"campaign": str(found["campaign"])}, tags=["campaign"])
        assert sorted(r.id for r in listed) == sorted(runs.values())
        assert all(r.meta["wafer"] == "W3" and r.status == "completed" for r in listed)
        assert all(r.identity["model"] == "PCM-EMULATOR" for r in listed)
    threshold = pcm_hil.load_run(runs["melt-threshold"])
    assert threshold.attrs["reset_uA"] == 600.0 and threshold.attrs["width_ns"] == 10.0
    assert threshold.current_uA.values[0] == 100.0 and threshold.current_uA.values[-1] == 320.0
    curve = pcm_hil.load_run(runs["programming-curve"])
    assert curve.conductance_uS.dims == ("point", "device") and curve.sizes["device"] == 64
    assert curve.current_uA.values[0] == 150.0 and curve.current_uA.values[-1] == 600.0
    assert curve.attrs["settle_s"] == 20.0 and "reset_uA" not in curve.attrs
    accumulation = pcm_hil.load_run(runs["accumulation"])
    assert accumulation.sizes["point"] == 21  # the RESET state, then 20 pulses
    assert accumulation.attrs["settle_s"] == 20.0
    drift = pcm_hil.load_run(runs["drift"])
    assert drift.sizes["time"] == 12 and drift.t_s.values[-1] == pytest.approx(1e5, rel=1e-6)
    assert set(np.unique(drift.level.values)) == set(range(16))
    # the levels are evenly spaced in ln G, from 0.8 µS to 0.95·g_max
    targets = np.unique(drift.target_uS.values)
    np.testing.assert_allclose(targets, np.geomspace(0.8, 0.95 * 25.0, 16), rtol=1e-6)
    programming = pcm_hil.load_run(runs["drift"], "program")
    assert programming.converged.mean() > 0.9
    noise = pcm_hil.load_run(runs["read-noise"])
    np.testing.assert_allclose(noise.t_s.values, [1.0, 100.0, 1e4])
    # the five sets of devices do not overlap (the small chip has four tiles: all on tile 0)
    devices = [set(pcm_hil.load_run(run).address.values.tolist()) for run in runs.values()]
    assert sum(len(d) for d in devices) == len(set().union(*devices)) == 5 * 64


def test_a_campaign_cancelled_ends_with_what_it_has(monkeypatch):
    """Ctrl-C during the accumulation: its run is cancelled, no later measurement runs."""
    import pcm_hil.twin.campaign as campaign

    stopped = []

    def stop(event):
        if event.document.name == "accumulation.point" and not stopped:
            stopped.append(True)
            raise KeyboardInterrupt

    original = campaign.record
    monkeypatch.setattr(
        campaign, "record", lambda *args, **kwargs: original(*args, **kwargs, listeners=[stop])
    )
    with pcm_hil.PcmChip.open("emulator?profile=small&seed=5") as chip:
        ids = run_campaign(chip, Campaign(devices=16))
    with RunStore(readonly=True) as store:
        assert [store.run(i).status for i in ids] == ["completed", "completed", "cancelled"]
