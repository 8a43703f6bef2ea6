"""Mixed-precision training with the weights on the chip (Nandakumar et al. 2020).

The weights live on the chip as differential pairs, W = (G+ − G−)/s. Forward and backward
passes use the chip's MVM (backward: transposed). Weight updates accumulate in a
high-precision variable χ in software, in µS; whenever |χ| ≥ ε (the device granularity),
⌊|χ|/ε⌋ partial-SET pulses (at most ``max_pulses``) go to G+ (χ > 0) or G− (χ < 0), and what
was applied, n·ε, is subtracted from χ. Pairs whose devices climb too high are refreshed:
read, RESET both, and their difference programmed again onto one device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .analog import AnalogNetwork
from .events import Emitter, Listener, cancellable
from .nn.network import Network
from .nn.train import softmax_cross_entropy


@dataclass(frozen=True)
class StepModel:
    """The mean partial-SET step the trainer expects, µS: s·(offset + boost·e^(−n/n_decay))
    − slope·G for a device at G with n pulses since its last melt-quench (Nandakumar JAP 2018
    model, pcm-physics.md [derived]); s the pulse strength, taken proportional to the pulse
    width at the reference amplitude (s = 1 at 90 µA, 50 ns)."""

    offset_uS: float = 0.880
    boost_uS: float = 1.40
    slope: float = 0.084
    n_decay: float = 2.6

    def mean(self, g_uS, n_pulses, strength):
        boost = np.exp(-np.asarray(n_pulses, dtype=np.float64) / self.n_decay)
        return np.maximum(
            strength * (self.offset_uS + self.boost_uS * boost) - self.slope * g_uS, 0
        )

    def strength_for(self, step_uS, g_uS, n_pulses):
        """The strength whose mean step is ``step_uS`` for devices at ``g_uS``."""
        boost = np.exp(-np.asarray(n_pulses, dtype=np.float64) / self.n_decay)
        return (step_uS + self.slope * np.asarray(g_uS)) / (self.offset_uS + self.boost_uS * boost)


@dataclass
class UpdateRule:
    """How weight updates become pulses."""

    epsilon_uS: float | tuple[float, ...] = 0.75
    """Device granularity: the conductance change one partial-SET pulse stands for."""
    set_amplitude_uA: float = 90.0
    set_width_ns: float = 50.0
    """Pulse of strength 1 (the reference of the step model)."""
    compensate: bool = True
    """Stretch or shorten each pulse so its expected step is ε, from the device's estimated
    conductance and pulse count (else every pulse is the reference pulse)."""
    epsilon_grow_above_uS: float = float("inf")
    width_min_ns: float = 10.0
    width_max_ns: float = 200.0
    max_pulses: int = 4
    """At most this many pulses per device per update (the rest stays in χ)."""
    g_range_uS: float | tuple[float, ...] = (16.0, 8.0)
    """|W| = max|W0| maps to this conductance (one value, or one per weight layer)."""
    refresh_above_uS: float = 25.0
    """Refresh a pair when either device reads above this (and their difference is below)."""
    refresh_common_uS: float = 3.0
    """Refresh a pair when both devices read above this (conductance that only adds noise)."""
    refresh_every: int = 50
    """Check for pairs to refresh every this many batches."""
    program_tolerance_uS: float = 0.3
    reset_amplitude_uA: float = 550.0
    reset_width_ns: float = 50.0
    condition_pulses: int = 8
    condition_amplitude_uA: float = 45.0
    condition_width_ns: float = 10.0
    row_scaling: bool = True
    """Scale each input vector to the full DAC range (and back in digital)."""


@dataclass
class TrainingResult:
    epochs: int
    pulses_applied: int
    refreshed_pairs: int
    history: list[dict]
    status: str
    elapsed_s: float


def epoch_learning_rates(lr: float, epochs: int, schedule: str = "constant") -> list[float]:
    """The learning rate of each epoch: ``constant``, or ``linear`` decay from lr to lr/epochs."""
    if schedule == "constant":
        return [lr] * epochs
    if schedule == "linear":
        return [lr * (epochs - e) / epochs for e in range(epochs)]
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


#: A device reading above this right after a RESET is stuck SET, µS.
STUCK_SET_ABOVE_uS = 5.0
#: A device still below this after 8 partial-SET pulses is stuck RESET, µS.
STUCK_RESET_BELOW_uS = 0.5
#: Programming steps aim at this fraction of the remaining gap.
PROGRAM_AIM = 0.8
#: At most this many partial-SET iterations when programming.
PROGRAM_ITERATIONS = 40


class InSituTrainer:
    """Trains ``network`` with its weight layers on ``chip`` (an ``AnalogNetwork`` binding)."""

    def __init__(
        self,
        analog: AnalogNetwork,
        rule: UpdateRule | None = None,
        model: StepModel | None = None,
    ) -> None:
        self.analog = analog
        self.rule = rule or UpdateRule()
        self.model = model or StepModel()
        chip = analog.chip
        self.chip = chip
        # conductance scale: the initial weights' largest |w| at g_range
        ranges = np.broadcast_to(self.rule.g_range_uS, len(analog.weights))
        self.epsilon = [
            float(e) for e in np.broadcast_to(self.rule.epsilon_uS, len(analog.weights))
        ]
        self.analog.scales = [
            float(g) / max(float(np.abs(w).max()), 1e-12)
            for g, w in zip(ranges, analog.weights, strict=True)
        ]
        self.chi = [np.zeros(w.shape, dtype=np.float64) for w in analog.weights]
        # per layer, index 0 = G+ and 1 = G−: address, estimated conductance, pulses since melt
        self.tiles = []
        self.addresses = []
        self.g_est = [np.zeros((2, *w.shape)) for w in analog.weights]
        self.n_est = [np.zeros((2, *w.shape), dtype=np.int64) for w in analog.weights]
        self.live = [np.ones(w.shape, dtype=bool) for w in analog.weights]
        self.pulses_applied = 0
        self.refreshed_pairs = 0
        for k, weight in enumerate(analog.weights):
            address = np.zeros((2, *weight.shape), dtype=np.int64)
            tiles = np.zeros(weight.shape, dtype=np.int64)
            for block in analog._blocks_of(k):
                a_plus, a_minus = block.addresses(chip.config.columns)
                window = (
                    slice(block.in_start, block.in_stop),
                    slice(block.out_start, block.out_stop),
                )
                address[0][window], address[1][window], tiles[window] = a_plus, a_minus, block.tile
            self.tiles.append(tiles)
            self.addresses.append(address)

    # --- products ------------------------------------------------------------------------------

    def matmul(self, k: int, x2d: np.ndarray) -> np.ndarray:
        """x2d @ W_k on the chip; with row scaling each vector uses the DAC's full range."""
        if not self.rule.row_scaling:
            return self.analog.matmul(k, x2d)
        scale = self.analog.input_scale[k]
        rows = _row_max(x2d)
        return self.analog.matmul(k, x2d * (scale / rows)) * (rows / scale)

    def matmul_t(self, k: int, g2d: np.ndarray) -> np.ndarray:
        """g2d @ W_kᵀ on the chip (transposed MVM), row-scaled likewise."""
        if not self.rule.row_scaling:
            return self.analog.matmul_t(k, g2d)
        rows = _row_max(g2d)
        return self.analog.matmul_t(k, g2d / rows) * rows

    # --- programming ---------------------------------------------------------------------------

    def program_initial_weights(self, tolerance_uS: float | None = None) -> None:
        """Program every pair to the network's initial weights."""
        tol = self.rule.program_tolerance_uS if tolerance_uS is None else tolerance_uS
        parts = []
        for k, weight in enumerate(self.analog.weights):
            g = weight * self.analog.scales[k]
            target = np.stack([np.maximum(g, 0), np.maximum(-g, 0)])
            parts.append((k, np.ones(weight.shape, dtype=bool), target))
        self._program_pairs(parts, tol)

    def _program_pairs(self, parts, tolerance_uS: float) -> None:
        """Program the pairs ``mask`` of layer k to ``target`` (2, *shape) for (k, mask,
        target) in ``parts``. Pairs with a stuck device are marked dead (no more updates)."""
        layers = np.concatenate([np.full(int(mask.sum()), k) for k, mask, _ in parts])
        index = np.concatenate([np.argwhere(mask) for _, mask, _ in parts])
        tile = np.concatenate([self.tiles[k][mask] for k, mask, _ in parts])
        address = np.concatenate([self.addresses[k][:, mask] for k, mask, _ in parts], axis=1)
        target = np.concatenate([t[:, mask] for _, mask, t in parts], axis=1)
        final, pulses, stuck = self._program_partial(tile, address, target, tolerance_uS)
        for k in np.unique(layers):
            here = layers == k
            i, j = index[here, 0], index[here, 1]
            self.g_est[k][:, i, j] = final[:, here]
            self.n_est[k][:, i, j] = pulses[:, here]
            dead = stuck[:, here].any(axis=0)
            self.live[k][i[dead], j[dead]] = False

    def _program_partial(self, tile, address, target, tolerance_uS: float):
        """Program pairs (``address`` and ``target`` (2, P), both devices of a pair on
        ``tile``): RESET, conditioning pulses, then partial-SET steps with a read after each,
        aimed short of the remaining gap so that overshoot is rare. A device that reads high
        after the RESET is stuck SET: its partner is programmed to match it, so the pair
        holds W ≈ 0. Returns (final µS, pulses since the RESET, stuck), each (2, P)."""
        rule = self.rule
        pairs = tile.size
        tile = np.concatenate([tile, tile])
        address = address.ravel()
        target = target.astype(np.float64).ravel()
        tiles = np.unique(tile)
        groups = [tile == t for t in tiles]
        for t, here in zip(tiles, groups, strict=True):
            self.chip.pulse(int(t), address[here], rule.reset_amplitude_uA, rule.reset_width_ns)
        for _ in range(rule.condition_pulses):
            for t, here in zip(tiles, groups, strict=True):
                self.chip.pulse(
                    int(t), address[here], rule.condition_amplitude_uA, rule.condition_width_ns
                )
        pulses = np.full(tile.size, rule.condition_pulses, dtype=np.int64)
        read = self._read(tile, address, tiles, groups)
        stuck = read > STUCK_SET_ABOVE_uS
        partner = np.concatenate([stuck[pairs:], stuck[:pairs]])
        target = np.where(partner & ~stuck, np.concatenate([read[pairs:], read[:pairs]]), target)
        for _ in range(PROGRAM_ITERATIONS):
            gap = target - read
            active = (gap > tolerance_uS) & ~stuck
            if not active.any():
                break
            strength = self.model.strength_for(PROGRAM_AIM * gap, read, pulses)
            width = np.clip(rule.set_width_ns * strength, rule.width_min_ns, rule.width_max_ns)
            for t, here in zip(tiles, groups, strict=True):
                go = here & active
                if go.any():
                    self.chip.pulse(
                        int(t), address[go], rule.set_amplitude_uA, width[go].astype(np.float32)
                    )
            pulses[active] += 1
            new = self._read(tile, address, tiles, groups, active)
            # no response to many pulses: stuck RESET
            stuck |= active & (pulses > rule.condition_pulses + 8) & (new < STUCK_RESET_BELOW_uS)
            read[active] = new[active]
        return read.reshape(2, pairs), pulses.reshape(2, pairs), stuck.reshape(2, pairs)

    def _read(self, tile, address, tiles, groups, mask=None) -> np.ndarray:
        """One read per tile of the devices in ``mask`` (all); zeros elsewhere."""
        out = np.zeros(tile.size)
        for t, here in zip(tiles, groups, strict=True):
            go = here if mask is None else here & mask
            if go.any():
                out[go] = self.chip.read(int(t), address[go])
        return out

    # --- training ------------------------------------------------------------------------------

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        lr: float,
        batch: int = 10,
        rng: np.random.Generator,
        schedule: str = "constant",
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        listeners: Iterable[Listener] = (),
    ) -> TrainingResult:
        """SGD on softmax cross-entropy; every product on the chip; updates as pulses."""
        network: Network = self.analog.network
        emitter = Emitter("train", listeners, total=epochs)
        history = []
        started = time.perf_counter()
        batches = 0
        rates = epoch_learning_rates(lr, epochs, schedule)
        with cancellable(
            emitter, epochs=epochs, lr=lr, batch=batch, epsilon_uS=self.rule.epsilon_uS
        ) as run:
            for epoch in range(1, epochs + 1):
                order = rng.permutation(len(x))
                for i in range(0, len(x), batch):
                    index = order[i : i + batch]
                    self._step(network, x[index], y[index], rates[epoch - 1])
                    batches += 1
                    if batches % self.rule.refresh_every == 0:
                        self.refresh()
                record = {"epoch": epoch, "pulses_applied": self.pulses_applied}
                if x_test is not None:
                    record["test_accuracy"] = network.accuracy(x_test, y_test, matmul=self.matmul)
                history.append(record)
                emitter.step(**record)
        emitter.end(run.status, pulses_applied=self.pulses_applied)
        return TrainingResult(
            len(history),
            self.pulses_applied,
            self.refreshed_pairs,
            history,
            run.status,
            time.perf_counter() - started,
        )

    def _step(self, network: Network, xb: np.ndarray, yb: np.ndarray, lr: float) -> None:
        network.zero_grad()
        logits = network.forward(xb, training=True, matmul=self.matmul)
        _loss, grad = softmax_cross_entropy(logits, yb)
        network.backward(grad, matmul_t=self.matmul_t, input_grad=False)
        for k, layer in enumerate(network.weight_layers()):
            self.chi[k] -= lr * layer.grad_weight * self.analog.scales[k]
            layer.bias -= lr * layer.grad_bias  # biases stay digital
        self._apply_pulses()

    def _apply_pulses(self) -> None:
        """Turn whole multiples of ε in χ into partial-SET pulses, one command per tile per
        round; subtract what was applied from χ."""
        rule = self.rule
        for k, chi in enumerate(self.chi):
            chi[~self.live[k]] = 0.0
            side = (chi < 0).astype(np.int64)
            tiles = self.tiles[k]
            g, n = self.g_est[k], self.n_est[k]
            epsilon = self.epsilon[k] * np.maximum(
                1.0, np.take_along_axis(g, side[None], 0)[0] / rule.epsilon_grow_above_uS
            )
            count = np.minimum(np.floor(np.abs(chi) / epsilon), rule.max_pulses).astype(np.int64)
            if not count.any():
                continue
            for round_ in range(1, int(count.max()) + 1):
                i, j = np.nonzero(count >= round_)
                s = side[i, j]
                if rule.compensate:
                    strength = self.model.strength_for(epsilon[i, j], g[s, i, j], n[s, i, j])
                    width = np.clip(
                        rule.set_width_ns * strength, rule.width_min_ns, rule.width_max_ns
                    )
                else:
                    width = np.full(i.size, rule.set_width_ns)
                addresses = self.addresses[k][s, i, j]
                t = tiles[i, j]
                for tile in np.unique(t):
                    here = t == tile
                    self.chip.pulse(
                        int(tile),
                        addresses[here],
                        rule.set_amplitude_uA,
                        width[here].astype(np.float32),
                    )
                g[s, i, j] += self.model.mean(g[s, i, j], n[s, i, j], width / rule.set_width_ns)
                n[s, i, j] += 1
                self.pulses_applied += int(i.size)
            chi -= np.sign(chi) * count * epsilon

    def refresh(self) -> int:
        """Read every pair (one read per tile per layer); reprogram those with a device above
        ``refresh_above_uS``: RESET both, then program the pair's difference onto one device.
        Returns how many pairs were refreshed."""
        rule = self.rule
        parts = []
        refreshed = 0
        for k in range(len(self.chi)):
            tiles = self.tiles[k]
            g = self.g_est[k]
            for tile in np.unique(tiles):
                here = tiles == tile
                for side in (0, 1):
                    g[side][here] = self.chip.read(int(tile), self.addresses[k][side][here])
            difference = g[0] - g[1]
            full = (g.max(axis=0) > rule.refresh_above_uS) & (
                np.abs(difference) < rule.refresh_above_uS
            ) | (g.min(axis=0) > rule.refresh_common_uS)
            full &= self.live[k]
            if not full.any():
                continue
            target = np.stack([np.maximum(difference, 0), np.maximum(-difference, 0)])
            parts.append((k, full, target))
            refreshed += int(full.sum())
        if parts:
            self._program_pairs(parts, rule.program_tolerance_uS)
        self.refreshed_pairs += refreshed
        return refreshed


def _row_max(a: np.ndarray) -> np.ndarray:
    rows = np.abs(a).max(axis=1, keepdims=True)
    return np.where(rows > 0, rows, 1.0)


def train_on_chip(
    chip,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    hidden: int = 128,
    epochs: int = 20,
    lr: float = 0.2,
    batch: int = 10,
    seed: int = 0,
    listeners: Iterable[Listener] = (),
    rule: UpdateRule | None = None,
    schedule: str = "linear",
) -> dict:
    """Train ``zoo.mlp(hidden)`` on ``data`` = (x_train, y_train, x_test, y_test) twice from
    the same initial weights and with the same shuffles and learning-rate schedule: in
    floating point (plain SGD, no momentum) and in situ on ``chip``. Returns fp_accuracy,
    chip_accuracy (test), epochs, pulses_applied, elapsed_s, refreshed_pairs."""
    from .nn.train import train
    from .nn.zoo import mlp

    started = time.perf_counter()
    x_train, y_train, x_test, y_test = data
    software = mlp(np.random.default_rng(seed), hidden=hidden)
    shuffles = np.random.default_rng([seed, 1])
    for rate in epoch_learning_rates(lr, epochs, schedule):
        train(
            software, x_train, y_train, epochs=1, lr=rate, batch=batch, rng=shuffles, momentum=0.0
        )
    fp_accuracy = software.accuracy(x_test, y_test)

    network = mlp(np.random.default_rng(seed), hidden=hidden)
    analog = AnalogNetwork(chip, network)
    trainer = InSituTrainer(analog, rule)
    trainer.program_initial_weights()
    result = trainer.train(
        x_train,
        y_train,
        epochs=epochs,
        lr=lr,
        batch=batch,
        rng=np.random.default_rng([seed, 1]),
        schedule=schedule,
        listeners=listeners,
    )
    chip_accuracy = network.accuracy(x_test, y_test, matmul=trainer.matmul)
    return {
        "fp_accuracy": float(fp_accuracy),
        "chip_accuracy": float(chip_accuracy),
        "epochs": result.epochs,
        "pulses_applied": result.pulses_applied,
        "elapsed_s": time.perf_counter() - started,
        "refreshed_pairs": result.refreshed_pairs,
    }
