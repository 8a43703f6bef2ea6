"""A device model exported for IBM's analog hardware kit: its drift and read-noise formulas
are the model's, its programming noise the model's chip's, measured."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from pcm_hil.cli.main import main
from pcm_hil.emulator.calibration import DEFAULT_MODEL
from pcm_hil.emulator.devices import drift_exponent_stats, read_noise_q
from pcm_hil.emulator.model_file import save_model
from pcm_hil.procedures.program import published_programming_sigma
from pcm_hil.twin.aihwkit import coefficients, export

#: A model unlike the default in every exported coefficient.
PERTURBED = DEFAULT_MODEL.with_overrides(
    g_max_uS=20.0,
    drift_t0_s=10.0,
    nu_mean_slope=-0.02,
    nu_mean_offset=0.03,
    nu_mean_low=0.04,
    nu_std_slope=-0.01,
    read_noise_q_scale=0.011,
    read_noise_q_exponent=0.6,
)


def _module(model):
    namespace: dict = {}
    exec(compile(export(model, "aihwkit", source="test"), "exported.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("model", [DEFAULT_MODEL, PERTURBED], ids=["default", "perturbed"])
def test_the_exported_formulas_are_the_models_at_16_conductances(model):
    exported = _module(model)
    g = np.geomspace(0.2, model.g_max_uS, 16)
    mean, std = drift_exponent_stats(model, g)
    np.testing.assert_allclose(exported["mu_nu"](g), mean, rtol=0.01)
    np.testing.assert_allclose(exported["sigma_nu"](g), std, rtol=0.01)
    np.testing.assert_allclose(exported["q_s"](g), read_noise_q(model, g), rtol=0.01)
    found = exported["COEFFICIENTS"]
    assert (found["g_max"], found["t_0"]) == (model.g_max_uS, model.drift_t0_s)
    assert found["t_read"] == model.read_noise_t_read_s
    # the programming noise: aihwkit's quadratic, fitted to the σ measured per level (512
    # devices each: ±3% standard error) — an approximation of the model's own shape
    levels = np.asarray(found["levels_uS"])
    measured = np.asarray(found["sigma_prog_uS"])
    relative = exported["sigma_prog"](levels) / measured - 1
    assert np.sqrt(np.mean(relative[levels >= 1.0] ** 2)) < 0.15
    assert np.median(np.abs(relative)) < 0.1


def test_the_programming_noise_is_the_chips_measured():
    """The export measures σ_prog on the model's chip rather than copying the paper: on the
    default model's chip it comes out near the published one at every level ≥ 1 µS (issue
    #15's correction (2)), and a chip that programs less precisely (twice the read noise:
    its verify reads see less) exports a larger σ_prog."""
    found = coefficients(DEFAULT_MODEL)
    levels, sigma = np.asarray(found.levels_uS), np.asarray(found.sigma_prog_uS)
    ratio = sigma / published_programming_sigma(levels)
    # measured with export seeds 0–3: 0.90–1.25 at the levels ≥ 1 µS, the highest at 5.5 µS
    # (the default model's bias there, issue #15), 12 or more of 15 within ±10%
    assert np.all((ratio[levels >= 1] > 0.8) & (ratio[levels >= 1] < 1.3)), ratio.round(3)
    assert np.count_nonzero(np.abs(ratio[levels >= 1] - 1) <= 0.1) >= 12, ratio.round(3)
    coarse = DEFAULT_MODEL.with_overrides(read_noise_q_scale=2 * DEFAULT_MODEL.read_noise_q_scale)
    worse = np.asarray(coefficients(coarse).sigma_prog_uS)
    assert np.mean(worse[levels >= 1] / sigma[levels >= 1]) > 1.2
    assert coefficients(DEFAULT_MODEL) == found  # seeded: the same export every time


def test_the_module_builds_aihwkits_noise_model(monkeypatch):
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")

    class PCMLikeNoiseModel:  # what the export needs of aihwkit's class
        def __init__(self, prog_coeff, t_read, t_0, prog_coeff_g_max_reference, g_max, **rest):
            self.prog_coeff, self.t_read, self.t_0 = prog_coeff, t_read, t_0
            self.g_max, self.reference, self.rest = g_max, prog_coeff_g_max_reference, rest
            self.drift_scale = self.read_noise_scale = 1.0

    noise = types.ModuleType("aihwkit.inference.noise.pcm")
    noise.PCMLikeNoiseModel = PCMLikeNoiseModel
    for name in ("aihwkit", "aihwkit.inference", "aihwkit.inference.noise"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "aihwkit.inference.noise.pcm", noise)
    exported = _module(PERTURBED)
    model = exported["noise_model"](read_noise_scale=1.0)
    assert model.g_max == 20.0 and model.t_0 == 10.0 and model.reference == 20.0
    assert list(model.prog_coeff) == list(exported["COEFFICIENTS"]["prog_coeff"])
    torch.manual_seed(0)
    g = torch.full((20000,), 5.0)
    nu = model.generate_drift_coefficients(g).numpy()
    assert nu.mean() == pytest.approx(float(exported["mu_nu"](5.0)), rel=0.03)
    drifted = model.apply_drift_noise_to_conductance(g, torch.full_like(g, 0.05), 990.0)
    assert drifted.mean().item() == pytest.approx(5.0 * (1000 / 10) ** -0.05, rel=0.01)


def test_the_cli_exports_a_model_file(tmp_path, capsys):
    path = save_model(PERTURBED, tmp_path / "chip.toml")
    out = tmp_path / "chip_noise.py"
    assert main(["twin", "export", str(path), "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "def noise_model" in out.read_text()
    assert main(["twin", "export", str(path), "--output", str(out)]) == 1  # never over a file
    assert "exists" in capsys.readouterr().err
    assert main(["twin", "export", str(path), "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["nu_mean"] == [-0.02, 0.03, 0.04, 0.1] and found["g_max"] == 20.0
