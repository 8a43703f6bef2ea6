"""A device model exported for IBM's analog hardware kit (aihwkit), the field's reference
simulator: its ``PCMLikeNoiseModel`` with this model's coefficients, so that a lab's
simulated (hardware-aware) training uses its own chip's statistics.

The mapping, coefficient by coefficient (aihwkit ``inference/noise/pcm.py``):

- ``g_max`` ← ``g_max_uS``; ``t_0`` ← ``drift_t0_s``; ``t_read`` ← ``read_noise_t_read_s``.
- drift: μ_ν = clamp(a·ln(G/g_max) + b, low, high), σ_ν likewise — aihwkit's own form, whose
  constants it fixes at (−0.0155, 0.0244, 0.049, 0.1) and (−0.0125, −0.0059, 0.008, 0.045);
  the export overrides ``generate_drift_coefficients`` with ``nu_mean_*`` and ``nu_std_*``.
- read noise: Q_s = min(scale/(G/g_max)^exponent, cap), σ/G = Q_s·sqrt(ln((t + t_read)/(2
  t_read))) — aihwkit's form with (0.0088, 0.65, 0.2); the export overrides
  ``apply_drift_noise_to_conductance`` with ``read_noise_q_*``.
- programming noise: aihwkit's σ_prog(G) = c0 + c1·(G/g_max) + c2·(G/g_max)² µS
  (``prog_coeff``). The emulator has no such formula — its spread comes out of its
  programming physics and program-and-verify — so the export measures it: the model's chip
  is programmed to ``levels`` levels (``programming_sigma``), verified t0 after each pulse,
  the programmed spread per level taken from its final and repeat reads (read noise apart),
  and the quadratic fitted to σ per level by relative least squares.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pcm_hil.drivers.chip import PcmChip
from pcm_hil.emulator.calibration import PcmModel
from pcm_hil.emulator.model_file import save_model
from pcm_hil.procedures.program import level_targets, program_and_verify
from pcm_hil.targets.clock import ChipClock

#: Levels and devices per level of the programming-noise measurement.
LEVELS = 16
DEVICES_PER_LEVEL = 1024


@dataclass(frozen=True)
class AihwkitCoefficients:
    """Everything aihwkit's PCM noise model takes, from one device model."""

    g_max: float
    t_0: float
    t_read: float
    prog_coeff: tuple[float, float, float]
    nu_mean: tuple[float, float, float, float]
    """(slope, offset, low, high) of μ_ν in ln(G/g_max)."""
    nu_std: tuple[float, float, float, float]
    q_s: tuple[float, float, float]
    """(scale, exponent, cap) of the read-noise Q_s."""
    levels_uS: tuple[float, ...]
    sigma_prog_uS: tuple[float, ...]
    """The measured σ_prog per level behind ``prog_coeff``."""


def programming_sigma(
    model: PcmModel, *, seed: int = 0, levels: int = LEVELS
) -> tuple[np.ndarray, np.ndarray]:
    """(targets µS, σ_prog µS per target): the model's chip (``small`` profile, seeded)
    programmed by program-and-verify with its verify reads t0 after each pulse; per level,
    the programmed spread of the converged devices at t0 — the spread of their final reads
    about the target, less the read noise their repeat reads measure
    (``procedures.program.error_statistics``). Stuck devices are left out."""
    with tempfile.TemporaryDirectory() as folder:
        path = save_model(model, Path(folder) / "model.toml")
        resource = f"emulator?profile=small&seed={seed}&model={path}"
        with PcmChip.open(resource) as chip:
            devices = chip.config.devices_per_tile
            per_tile = min(devices, levels * DEVICES_PER_LEVEL // chip.config.tiles)
            tiles, addresses = [], []
            for tile in range(chip.config.tiles):
                tiles.append(np.full(per_tile, tile))
                addresses.append(np.arange(per_tile))
            tile_of, address = np.concatenate(tiles), np.concatenate(addresses)
            targets = level_targets(levels, model.g_max_uS)[np.arange(tile_of.size) % levels]
            result = program_and_verify(
                chip, tile_of, address, targets, settle_s=model.drift_t0_s, clock=ChipClock(chip)
            )
    summary = result.summary(model.g_max_uS)["levels"]
    level_values = np.array([level["target_uS"] for level in summary], np.float64)
    sigma = np.array([level["programmed_spread_uS"] for level in summary], np.float64)
    return level_values, sigma


def coefficients(model: PcmModel, *, seed: int = 0) -> AihwkitCoefficients:
    """aihwkit's coefficients for ``model`` (σ_prog measured, see the module)."""
    targets, sigma = programming_sigma(model, seed=seed)
    x = targets / model.g_max_uS
    # relative least squares: each level's σ has about the same relative standard error
    # (√(1/(2(n−1))) with n devices per level)
    c2, c1, c0 = np.polyfit(x, sigma, 2, w=1.0 / np.maximum(sigma, 1e-3))
    return AihwkitCoefficients(
        g_max=model.g_max_uS,
        t_0=model.drift_t0_s,
        t_read=model.read_noise_t_read_s,
        prog_coeff=(float(c0), float(c1), float(c2)),
        nu_mean=(model.nu_mean_slope, model.nu_mean_offset, model.nu_mean_low, model.nu_mean_high),
        nu_std=(model.nu_std_slope, model.nu_std_offset, model.nu_std_low, model.nu_std_high),
        q_s=(model.read_noise_q_scale, model.read_noise_q_exponent, model.read_noise_q_cap),
        levels_uS=tuple(float(t) for t in targets),
        sigma_prog_uS=tuple(float(s) for s in sigma),
    )


MODULE = '''"""aihwkit's PCM noise model with the coefficients of {source}, exported by pcm-hil
(pcm-hil twin export). ``noise_model()`` builds it (aihwkit needed); the formulas below are
those it applies, in numpy, to check them against the device model without aihwkit."""

import numpy as np

COEFFICIENTS = {coefficients}


def mu_nu(g_uS):
    a, b, low, high = COEFFICIENTS["nu_mean"]
    g = np.maximum(np.abs(np.asarray(g_uS, float)) / COEFFICIENTS["g_max"], 1e-7)
    return np.clip(a * np.log(g) + b, low, high)


def sigma_nu(g_uS):
    a, b, low, high = COEFFICIENTS["nu_std"]
    g = np.maximum(np.abs(np.asarray(g_uS, float)) / COEFFICIENTS["g_max"], 1e-7)
    return np.clip(a * np.log(g) + b, low, high)


def q_s(g_uS):
    scale, exponent, cap = COEFFICIENTS["q_s"]
    g = np.abs(np.asarray(g_uS, float)) / COEFFICIENTS["g_max"]
    return np.minimum(scale / np.maximum(g**exponent, 1e-3), cap)


def sigma_prog(g_uS):
    c0, c1, c2 = COEFFICIENTS["prog_coeff"]
    g = np.asarray(g_uS, float) / COEFFICIENTS["g_max"]
    return c0 + c1 * g + c2 * g**2


def noise_model(**options):
    """aihwkit's ``PCMLikeNoiseModel`` with these coefficients; ``options`` go to it
    (prog_noise_scale, read_noise_scale, drift_scale, g_converter)."""
    import torch
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    class ChipNoiseModel(PCMLikeNoiseModel):
        @torch.no_grad()
        def generate_drift_coefficients(self, g_target):
            g = g_target.detach().cpu().numpy()
            mean, std = mu_nu(g), sigma_nu(g)
            noise = torch.randn_like(g_target).cpu().numpy()
            nu = np.abs(mean + std * noise)
            return torch.as_tensor(nu, dtype=g_target.dtype) * self.drift_scale

        @torch.no_grad()
        def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
            t = t_inference + self.t_0
            g_drift = g_prog * ((t / self.t_0) ** (-drift_noise_param)) if t > self.t_0 else g_prog
            q = torch.as_tensor(q_s(g_prog.detach().cpu().numpy()), dtype=g_prog.dtype)
            sigma = q * float(np.sqrt(np.log((t + self.t_read) / (2 * self.t_read))))
            noise = torch.randn_like(g_prog)
            return (g_drift + g_drift.abs() * self.read_noise_scale * sigma * noise).clamp(min=0.0)

    options.setdefault("g_max", COEFFICIENTS["g_max"])
    return ChipNoiseModel(
        prog_coeff=list(COEFFICIENTS["prog_coeff"]),
        t_read=COEFFICIENTS["t_read"],
        t_0=COEFFICIENTS["t_0"],
        prog_coeff_g_max_reference=COEFFICIENTS["g_max"],
        **options,
    )
'''


def export(model: PcmModel, fmt: str, source: str = "the device model", seed: int = 0) -> str:
    """The export's text: ``aihwkit`` (a Python module) or ``json`` (the coefficients)."""
    found = asdict(coefficients(model, seed=seed))
    if fmt == "json":
        return json.dumps(found, indent=2) + "\n"
    if fmt == "aihwkit":
        return MODULE.format(source=source, coefficients=json.dumps(found, indent=4))
    raise ValueError(f"format must be aihwkit or json, not {fmt!r}")
