"""The emulator's device model: every fitted or chosen constant, with its unit and source.

Sources, as tagged in ``shared/reference/pcm-physics.md``:
[code]    IBM aihwkit ``inference/noise/pcm.py`` (fitted on ~1 million IBM PCM devices);
[derived] a third-party transcription of a paper's supplement;
[paper]   a paper's abstract; [choice] no published figure found — a documented default.

Units: conductance µS, current µA, time s (pulse widths ns), voltage V, temperature K, energy eV.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

#: Boltzmann constant, eV/K (CODATA 2018, exact).
K_B_EV_PER_K = 8.617333262e-5


@dataclass(frozen=True)
class PcmModel:
    """Device physics of one PCM technology. Override fields with ``dataclasses.replace``."""

    # --- conductance range ------------------------------------------------------------------
    g_max_uS: float = 25.0
    """Largest reliably programmed conductance, top of the weight range [code, Joshi 2020]."""
    g_reset_uS: float = 0.1
    """Median conductance of a fully RESET (amorphous) device [derived, Nandakumar JAP 2018]."""
    g_reset_spread_ln: float = 0.3
    """Device-to-device spread of the RESET conductance, std of ln G [choice]."""
    g_crystalline_uS: float = 30.0
    """Conductance of a fully crystalline (SET) device, the ceiling of accumulation [choice:
    a little above g_max, which is the largest *reliably* programmed value]."""
    g_crystalline_spread: float = 0.05
    """Device-to-device relative std of the crystalline conductance [choice]."""
    g_floor_uS: float = 0.01
    """No device reads below this, µS [choice]."""

    # --- pulse thresholds and the melt-quench programming curve -----------------------------
    i_crystallize_uA: float = 40.0
    """Below this amplitude a pulse is a read and changes nothing [choice]."""
    i_melt_uA: float = 200.0
    """Mean melting threshold: at or above it a pulse melt-quenches the device [choice]."""
    i_melt_spread_uA: float = 8.0
    """Device-to-device std of the melting threshold [choice]."""
    i_curve_mid_uA: float = 330.0
    """Current at which the programming curve is half-way between crystalline and RESET
    [choice, shaped like seed 002 Fig. 2a; far enough above the melting threshold that the
    curve's top, just above it, lies above g_max for nearly every device]."""
    i_curve_mid_spread_uA: float = 15.0
    """Device-to-device std of the curve's mid-point current [choice]."""
    i_curve_slope_uA: float = 32.0
    """Logistic width of the programming curve: G falls from ~crystalline at the melting
    threshold to ~RESET at 500–550 µA [choice; RESET ≈ 450 µA plausible IBM value]."""
    cycle_noise_rel: float = 0.10
    """Cycle-to-cycle relative std of a melt-quench result [choice, seed 002 Fig. 2a shape]."""
    cycle_noise_uS: float = 0.2
    """Cycle-to-cycle absolute std of a melt-quench result, scaled by G/g_max [choice]."""

    # --- accumulative partial SET (Nandakumar JAP 2018 model) -------------------------------
    set_reference_amplitude_uA: float = 90.0
    """Amplitude at which the partial-SET model below holds [choice: ≈90 µA plausible]."""
    set_reference_width_ns: float = 50.0
    """Width at which the partial-SET model below holds [choice: 50 ns plausible]."""
    set_mean_offset_uS: float = 0.880
    """Mean ΔG = −slope·G + offset + boost·exp(−n/n_decay) [derived, Nandakumar 2018]."""
    set_mean_slope: float = 0.084
    """Dimensionless; see set_mean_offset_uS [derived, Nandakumar 2018]."""
    set_mean_boost_uS: float = 1.40
    """First-pulse excess of the mean step [derived, Nandakumar 2018]."""
    set_std_offset_uS: float = 0.260
    """Std ΔG = slope·G + offset + boost·exp(−n/n_decay) [derived, Nandakumar 2018]."""
    set_std_slope: float = 0.091
    """Dimensionless; see set_std_offset_uS [derived, Nandakumar 2018]."""
    set_std_boost_uS: float = 2.15
    """First-pulse excess of the step std [derived, Nandakumar 2018]."""
    set_n_decay: float = 2.6
    """Pulses over which the first-pulse excess decays [derived, Nandakumar 2018]."""
    set_strength_max: float = 4.0
    """Cap on the pulse strength s = (I − I_cryst)/(I_ref − I_cryst) · w/w_ref, which scales
    the G-independent terms of the partial-SET step [choice: extends the model to other
    amplitudes and widths; s = 1 is the published model]."""

    # --- drift (aihwkit PCM model) -----------------------------------------------------------
    drift_t0_s: float = 20.0
    """Reference time of the published drift fit: the programmed conductance is the one t0
    after programming, G(t) = G(t0)·(t/t0)^−ν [code]."""
    drift_t_start_s: float = 0.1
    """Drift onset: the power law holds from this time after a programming event on, before
    and after t0 (sooner reads see G(t_start)) [choice: the published fit starts at t0 = 20 s,
    a fitting convention; PCM drifts by a power law from well under a second after
    programming (Le Gallo & Sebastian 2020, J. Phys. D 53, 213002), and 0.1 s is also where
    the read-noise formula is stopped (read_noise_t_min_s)]."""
    nu_mean_slope: float = -0.0155
    """μ_ν = clip(slope·ln(G/g_max) + offset, low, high) [code]."""
    nu_mean_offset: float = 0.0244
    nu_mean_low: float = 0.049
    nu_mean_high: float = 0.1
    nu_std_slope: float = -0.0125
    """σ_ν = clip(slope·ln(G/g_max) + offset, low, high) [code]."""
    nu_std_offset: float = -0.0059
    nu_std_low: float = 0.008
    nu_std_high: float = 0.045

    # --- 1/f read noise (aihwkit PCM model) ---------------------------------------------------
    read_noise_q_scale: float = 0.0088
    """Q_s = min(scale / (G/g_max)^exponent, cap) [code]."""
    read_noise_q_exponent: float = 0.65
    read_noise_q_cap: float = 0.2
    read_noise_t_read_s: float = 250e-9
    """σ_read/G = Q_s·sqrt(ln((t + t_read)/(2·t_read))) [code]."""
    read_noise_t_min_s: float = 0.1
    """Reads sooner than this after programming take the noise of a read at t_min (the
    formula vanishes as t → t_read) [choice: with it, iterative program-and-verify at a 0.5 µS
    tolerance lands within ±20% of the published σ_prog at every level, as iterative
    programming precision is limited by read noise — Nandakumar IEDM 2020; see
    benchmarks/bench_program.py]."""

    # --- temperature ------------------------------------------------------------------------------
    t_reference_K: float = 300.0
    """Temperature of the fits above [choice: room temperature]."""
    drift_activation_eV: float = 0.3
    """Arrhenius activation energy of the drift clock: at temperature T, structural relaxation
    proceeds as if time ran exp(Ea/k·(1/T_ref − 1/T)) times faster [choice: no verified
    figure; higher T accelerates drift]."""
    conduction_activation_eV: float = 0.2
    """Activation energy of amorphous conduction: G(T) = G·exp(−Ea·a/k·(1/T − 1/T_ref)),
    a the amorphous fraction 1 − G/G_crystalline [choice; amorphous PCM is semiconducting]."""

    # --- failures ----------------------------------------------------------------------------------
    stuck_set_fraction: float = 0.0025
    """Fraction of devices stuck at the crystalline conductance [choice: 0.5% stuck in all,
    the low end of 0.5–1.5%; HERMES programs >99% of its unit cells (Le Gallo 2023)]."""
    stuck_reset_fraction: float = 0.0025
    """Fraction of devices stuck at the RESET conductance [choice, as above]."""

    # --- analog MVM ----------------------------------------------------------------------------------
    mvm_output_noise_uA: float = 0.1
    """Additive Gaussian noise of each MVM output before the ADC [choice]."""

    def with_overrides(self, **overrides: float) -> PcmModel:
        """A copy with the named fields changed; unknown names are refused."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown model parameter(s): {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


DEFAULT_MODEL = PcmModel()
