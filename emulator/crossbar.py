"""Analog matrix-vector multiply on a crossbar tile, with DAC and ADC.

Forward: inputs drive the rows as voltages, column currents I_j = Σ_i G_ij·V_i (µS·V = µA).
Transposed: inputs drive the columns, row currents I_i = Σ_j G_ij·V_j. The conductance
matrix is one noisy read of the tile per command (1/f noise is slow next to a batch);
each output also carries additive noise before the ADC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pcm_hil.emulator.gaussian import standard_normal


@dataclass(frozen=True)
class Converters:
    """Input DAC and output ADC of a tile: signed, symmetric, uniform quantizers."""

    dac_bits: int
    adc_bits: int
    input_max_V: float
    output_max_uA: float

    def quantize_inputs(self, volts: np.ndarray) -> np.ndarray:
        """Clip to ±input_max and round to the DAC's 2^(bits−1) − 1 steps per polarity."""
        return _quantize(volts, self.input_max_V, self.dac_bits)

    def quantize_outputs(self, currents: np.ndarray) -> np.ndarray:
        """Clip to ±output_max and round to the ADC's 2^(bits−1) − 1 steps per polarity."""
        return _quantize(currents, self.output_max_uA, self.adc_bits)


def _quantize(values: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    levels = 2 ** (bits - 1) - 1
    step = full_scale / levels
    out = np.divide(values, np.float32(step), dtype=np.float32)  # as clip, then ÷ step
    # in place from here: a batch of MVM inputs or outputs can be 16 MiB
    np.rint(out, out=out)
    np.clip(out, -levels, levels, out=out)  # clipping in steps: ±full scale
    out *= np.float32(step)
    return out


def multiply(
    conductance_uS: np.ndarray,
    inputs_V: np.ndarray,
    converters: Converters,
    output_noise_uA: float,
    rng: np.random.Generator,
    transposed: bool = False,
) -> np.ndarray:
    """Batched analog MVM. ``conductance_uS`` is (rows, columns); ``inputs_V`` is
    (n, rows) forward or (n, columns) transposed. Returns (n, columns) or (n, rows) µA."""
    volts = converters.quantize_inputs(inputs_V)
    matrix = conductance_uS.T if transposed else conductance_uS
    currents = volts @ matrix
    if output_noise_uA > 0:
        noise = standard_normal(rng, currents.shape)
        noise *= np.float32(output_noise_uA)
        currents += noise
    return converters.quantize_outputs(currents)
