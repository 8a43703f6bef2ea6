"""A network whose weight layers live on a chip: programming them, analog products through
the chip's MVM, and global drift compensation.

The product of weight layer k for a batch x (n × inputs) is read from the chip as
y = (I+ − I−) · x_scale / (V_k · s) · gain, with the inputs sent as voltages
v = clip(x / x_scale, −1, 1) · V_k. ``x_scale`` is the layer's input range (a percentile of |x|
on calibration data); ``s`` is the conductance scale of the weights; ``gain`` the global drift
compensation (GDC: 1 without it); V_k = min(α·gain, 1)·V_max the full-scale drive, with α ≤ 1
keeping the freshly programmed columns' currents within the ADC's range and the GDC gain
raising the drive as the conductances drift down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np

from pcm_hil.analog.mapping import Block, conductance_targets, place_layers
from pcm_hil.documents.events import Listener
from pcm_hil.procedures.program import (
    SETTLE_S,
    TOLERANCE_REL,
    TOLERANCE_US,
    ProgramResult,
    program_and_verify,
)

#: Most bytes of input voltages sent in one MVM command.
MVM_CHUNK_BYTES = 8 * 1024 * 1024
#: Dense ±V_max input patterns used to measure each layer's overall conductance for GDC.
GDC_PATTERNS = 32


class ChipNetwork(Protocol):
    """What the mapping and the experiments need of a network — pcm-hil's numpy
    ``pcm_hil.nn.Network``, or a torch model behind ``pcm_hil.torch.TorchNetwork``: its weight
    layers (each with ``weight``, inputs × outputs), a forward pass whose every weight-layer
    product goes through a hook ``matmul(k, x2d)``, its accuracy, its batch norms."""

    def weight_layers(self) -> Sequence[Any]: ...

    def batchnorm_layers(self) -> Sequence[Any]: ...

    @property
    def forward(self) -> Callable[..., np.ndarray]:
        """``forward(x, matmul=hook, …)``: the outputs for inputs ``x``."""
        ...

    @property
    def accuracy(self) -> Callable[..., float]:
        """``accuracy(x, y, batch=…, matmul=hook)``: the fraction classified right."""
        ...


class AnalogNetwork:
    """Binds a network's weight layers to a chip. ``matmul`` and ``matmul_t`` are the hooks
    the network's forward and backward passes call for each weight layer."""

    def __init__(
        self,
        chip,
        network: ChipNetwork,
        *,
        input_percentile: float = 99.9,
        weight_percentile: float = 100.0,
    ) -> None:
        self.chip = chip
        self.network = network
        config = chip.config
        self.v_max = float(config.mvm_input_max_V)
        self.columns_per_tile = config.columns
        self.weights = [layer.weight for layer in network.weight_layers()]
        self.blocks = place_layers(
            [w.shape for w in self.weights], config.tiles, config.rows, config.columns
        )
        self.scales = []
        self.targets = []
        for weight in self.weights:
            plus, minus, scale = conductance_targets(weight, config.g_max_uS, weight_percentile)
            self.scales.append(scale)
            self.targets.append((plus, minus))
        self.input_percentile = input_percentile
        self.output_max_uA = float(config.mvm_output_max_uA)
        self.output_headroom = 0.8
        self.input_scale = [1.0] * len(self.weights)
        self.voltage_gain = [1.0] * len(self.weights)
        self.gain = [1.0] * len(self.weights)
        self.reference: list[float] | None = None
        self.tile_devices = config.devices_per_tile
        # per (layer, gain, drive V, input scale, conductance scale): _stuck_corrections
        self._corrections: dict[tuple[float, ...], tuple[np.ndarray | None, np.ndarray]] = {}
        self.stuck = [(np.zeros(0, int),) * 5 for _ in self.weights]
        self._layer_blocks = [
            [b for b in self.blocks if b.layer == k] for k in range(len(self.weights))
        ]
        rng = np.random.default_rng(0)
        self._patterns = {
            b: self.v_max
            * rng.choice([-1.0, 1.0], size=(GDC_PATTERNS, b.inputs)).astype(np.float32)
            for b in self.blocks
        }

    @property
    def stuck(self) -> tuple[tuple[np.ndarray, ...], ...]:
        """Per weight layer, its stuck devices: (i, j, sign, target µS, held conductance µS).
        Set as a whole (a tuple: the products' corrections are kept until it changes)."""
        return self._stuck

    @stuck.setter
    def stuck(self, value: Sequence[tuple[np.ndarray, ...]]) -> None:
        self._stuck = tuple(tuple(layer) for layer in value)
        self._corrections.clear()

    # --- programming ----------------------------------------------------------------------------

    def device_plan(self) -> dict[str, np.ndarray]:
        """Every device of every block, G+ and G−: tile, address, target (µS), and which
        weight it serves: layer, input i, output j, sign (+1 for G+, −1 for G−)."""
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("tile", "address", "target", "layer", "i", "j", "sign")
        }
        for block in self.blocks:
            plus, minus = self.targets[block.layer]
            window = (slice(block.in_start, block.in_stop), slice(block.out_start, block.out_stop))
            n = block.inputs * block.outputs
            # (i, j) of the block's weights, row-major as its addresses; narrow integers: a
            # network's plan is millions of devices long
            i = np.repeat(np.arange(block.in_start, block.in_stop, dtype=np.int32), block.outputs)
            j = np.tile(np.arange(block.out_start, block.out_stop, dtype=np.int32), block.inputs)
            address_plus, address_minus = block.addresses(self.columns_per_tile)
            for address, target, sign in (
                (address_plus, plus[window], 1),
                (address_minus, minus[window], -1),
            ):
                parts["tile"].append(np.full(n, block.tile, dtype=np.int32))
                parts["address"].append(address.ravel())
                parts["target"].append(target.ravel())
                parts["layer"].append(np.full(n, block.layer, dtype=np.int16))
                parts["i"].append(i)
                parts["j"].append(j)
                parts["sign"].append(np.full(n, sign, dtype=np.int8))
        return {key: np.concatenate(value) for key, value in parts.items()}

    def program(
        self,
        *,
        tolerance_uS: float = TOLERANCE_US,
        tolerance_rel: float | None = TOLERANCE_REL,
        settle_s: float = SETTLE_S,
        max_iterations: int = 30,
        listeners: Iterable[Listener] = (),
    ) -> ProgramResult:
        """Program-and-verify every device of every weight layer; note the devices found stuck
        (their error is corrected digitally, see ``matmul``); take the GDC reference."""
        plan = self.device_plan()
        result = program_and_verify(
            self.chip,
            plan["tile"],
            plan["address"],
            plan["target"],
            tolerance_uS=tolerance_uS,
            tolerance_rel=tolerance_rel,
            settle_s=settle_s,
            max_iterations=max_iterations,
            listeners=listeners,
        )
        self._note_stuck(plan, result)
        self.reference = self.measure_conductance_scale()
        return result

    def _note_stuck(self, plan: dict[str, np.ndarray], result: ProgramResult) -> None:
        """Per layer, the stuck devices' (i, j, sign, target µS, conductance µS)."""
        # program_and_verify lists the devices tile by tile, each tile's in the plan's order:
        # a stable sort by tile (a radix sort of small integers) maps its order to the plan's
        order = np.argsort(plan["tile"], kind="stable")
        if not (
            np.array_equal(plan["tile"][order], result.tile)
            and np.array_equal(plan["address"][order], result.address)
        ):  # another order: find each device by its key
            key = plan["tile"] * self.tile_devices + plan["address"]
            order = np.argsort(key)
            order = order[
                np.searchsorted(key[order], result.tile * self.tile_devices + result.address)
            ]
        stuck = order[result.stuck]
        conductance = result.final_uS[result.stuck].astype(np.float64)
        per_layer = []
        for k in range(len(self.weights)):
            mine = plan["layer"][stuck] == k
            rows = stuck[mine]
            per_layer.append(
                (
                    plan["i"][rows],
                    plan["j"][rows],
                    plan["sign"][rows],
                    plan["target"][rows],
                    conductance[mine],
                )
            )
        self.stuck = per_layer

    # --- inputs and products ------------------------------------------------------------------------

    def calibrate_inputs(self, x: np.ndarray, **forward) -> None:
        """From a software forward pass over ``x``: each layer's input range (a percentile of
        |input|), and its voltage gain α ≤ 1, small enough that the columns' currents for
        these inputs stay within the ADC's range (``output_headroom`` of full scale)."""
        seen: dict[int, list[np.ndarray]] = {}

        def record(k: int, x2d: np.ndarray) -> np.ndarray:
            seen.setdefault(k, []).append(x2d[:: max(1, len(x2d) // 4096)])
            return x2d @ self.weights[k]

        self.network.forward(x, matmul=record, **forward)
        unused = [k for k in range(len(self.weights)) if k not in seen]
        if unused:
            raise ValueError(
                f"weight layer(s) {', '.join(map(str, unused))} of {len(self.weights)} were not "
                "used by the network's forward pass: their products would not run on the chip "
                "(a parent module reading a layer's weight itself, or a layer never called)"
            )
        for k in range(len(self.weights)):
            sample = np.concatenate(seen[k])
            self.input_scale[k] = max(
                float(np.percentile(np.abs(sample), self.input_percentile)), 1e-12
            )
            volts = np.clip(sample / self.input_scale[k], -1.0, 1.0) * self.v_max
            plus, minus = self.targets[k]
            currents = np.abs(np.concatenate([volts @ plus, volts @ minus], axis=1))
            largest = float(np.percentile(currents, self.input_percentile))
            self.voltage_gain[k] = min(
                1.0, self.output_headroom * self.output_max_uA / max(largest, 1e-12)
            )

    def matmul(self, k: int, x2d: np.ndarray) -> np.ndarray:
        """x2d @ W_k through the chip's forward MVM (float32: the chip's currents are)."""
        v_k = self.drive_V(k)
        # the drive in float32, clipped at ±V_k: one pass to scale, one to clip
        volts = np.multiply(x2d, np.float32(v_k / self.input_scale[k]), dtype=np.float32)
        np.clip(volts, -v_k, v_k, out=volts)
        factor = self.input_scale[k] / (v_k * self.scales[k]) * self.gain[k]
        blocks = self._layer_blocks[k]
        n_out = self.weights[k].shape[1]
        # float32 from here, as the chip's currents are: their 8-bit ADC steps are far coarser
        if len(blocks) == 1:  # the whole layer on one window: y = (I+ − I−)·factor
            currents = self._mvm(blocks[0], volts)
            out = np.subtract(currents[:, :n_out], currents[:, n_out:])
        else:
            out = np.zeros((x2d.shape[0], n_out), dtype=np.float32)
            for block in blocks:
                currents = self._mvm(block, volts[:, block.in_start : block.in_stop])
                m = block.outputs
                window = out[:, block.out_start : block.out_stop]
                window += currents[:, :m]
                window -= currents[:, m:]
        out *= np.float32(factor)
        if self.stuck[k][0].size:
            # A stuck device holds a conductance that neither follows its target nor drifts:
            # take out what it adds (scaled by the GDC gain like every other current) and put
            # in what its weight should add — as a product of the drive voltages (the clipped
            # inputs) and a matrix of the corrections, float32 like the chip's own product
            rows, corrections = self._stuck_corrections(k, v_k)
            out += (volts if rows is None else volts[:, rows]) @ corrections
        return out

    def _stuck_corrections(self, k: int, v_k: float) -> tuple[np.ndarray | None, np.ndarray]:
        """What each drive voltage of layer k adds to each output through its stuck devices,
        in weight units per volt: sign·(target − held·gain)/s · x_scale/V_k, for the rows with
        stuck devices (``None``: all rows, when most have one). Kept per gain, drive and
        scales (and until ``stuck`` is set again)."""
        key = (k, self.gain[k], v_k, self.input_scale[k], self.scales[k])
        cached = self._corrections.get(key)
        if cached is None:
            i, j, sign, target, held = self.stuck[k]
            rows, row = np.unique(i, return_inverse=True)
            per_device = sign * (target - held * self.gain[k]) / self.scales[k]
            per_device *= self.input_scale[k] / v_k
            corrections = np.zeros((rows.size, self.weights[k].shape[1]))
            np.add.at(corrections, (row, j), per_device)
            if 2 * rows.size > self.weights[k].shape[0]:  # most rows: one dense product
                full = np.zeros((self.weights[k].shape[0], corrections.shape[1]))
                full[rows] = corrections
                cached = (None, full.astype(np.float32))
            else:
                cached = (rows, corrections.astype(np.float32))
            if len(self._corrections) > 4 * len(self.weights):
                self._corrections.clear()
            self._corrections[key] = cached
        return cached

    def drive_V(self, k: int) -> float:
        """Full-scale input voltage of layer k: α·V_max, raised by the GDC gain as the
        conductances drift down (so the currents keep using the ADC's range), at most V_max."""
        return self.v_max * min(1.0, self.voltage_gain[k] * self.gain[k])

    def matmul_t(self, k: int, g2d: np.ndarray) -> np.ndarray:
        """g2d @ W_kᵀ through the chip's transposed MVM: the G+ and G− columns are driven
        with +v and −v, so each row current is Σ_j (G+ − G−)_ij v_j."""
        scale = max(float(np.percentile(np.abs(g2d), self.input_percentile)), 1e-12)
        volts = (np.clip(g2d / scale, -1.0, 1.0) * self.v_max).astype(np.float32)
        out = np.zeros((g2d.shape[0], self.weights[k].shape[0]), dtype=np.float64)
        for block in self._blocks_of(k):
            v = volts[:, block.out_start : block.out_stop]
            currents = self._mvm(block, np.concatenate([v, -v], axis=1), transposed=True)
            out[:, block.in_start : block.in_stop] += currents
        return out * (scale / (self.v_max * self.scales[k]) * self.gain[k])

    def _blocks_of(self, k: int) -> list[Block]:
        return self._layer_blocks[k]

    def _mvm(self, block: Block, volts: np.ndarray, transposed: bool = False) -> np.ndarray:
        """One windowed MVM per chunk of input vectors."""
        per_chunk = max(1, MVM_CHUNK_BYTES // (4 * volts.shape[1]))
        parts = [
            self.chip.mvm(
                block.tile,
                volts[i : i + per_chunk],
                transposed=transposed,
                row=block.row,
                column=block.column,
                rows=block.inputs,
                columns=2 * block.outputs,
            )
            for i in range(0, volts.shape[0], per_chunk)
        ]
        return np.concatenate(parts, axis=0)

    # --- global drift compensation ----------------------------------------------------------------

    def measure_conductance_scale(self) -> list[float]:
        """Per layer, the mean |column current| for fixed dense ±V_max input patterns: a
        measure of the layer's overall conductance. (aihwkit drives one row at a time; a dense
        pattern gives currents well above the ADC's step, so quantization does not bias it.)
        The devices found stuck are left out — what they add, pattern × held conductance, is
        taken from their columns' currents — since they do not drift: counted in, they pull
        the gain towards 1."""
        totals = [0.0] * len(self.weights)
        for block in self.blocks:
            patterns = self._patterns[block]
            currents = self._mvm(block, patterns)
            self._leave_out_stuck(block, patterns, currents)
            totals[block.layer] += float(np.abs(currents).mean())
        return totals

    def _leave_out_stuck(self, block: Block, volts: np.ndarray, currents: np.ndarray) -> None:
        """Take from ``currents`` (vectors × the block's 2·outputs columns) what the block's
        stuck devices add for the input ``volts`` (vectors × its inputs), in place."""
        i, j, sign, _target, held = self.stuck[block.layer]
        mine = (i >= block.in_start) & (i < block.in_stop)
        mine &= (j >= block.out_start) & (j < block.out_stop)
        if not mine.any():
            return
        rows = i[mine] - block.in_start
        columns = j[mine] - block.out_start + np.where(sign[mine] > 0, 0, block.outputs)
        np.add.at(currents.T, columns, -(volts[:, rows] * held[mine]).T)

    def compensate_drift(self) -> list[float]:
        """GDC: each layer's output gain becomes reference / now. Returns the gains."""
        if self.reference is None:
            raise RuntimeError("program the network first: GDC needs its reference")
        now = self.measure_conductance_scale()
        self.gain = [ref / max(cur, 1e-12) for ref, cur in zip(self.reference, now, strict=True)]
        return self.gain

    def no_compensation(self) -> None:
        self.gain = [1.0] * len(self.weights)
