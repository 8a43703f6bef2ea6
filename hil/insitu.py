"""Mixed-precision training with the weights on the chip (Nandakumar et al. 2020).

The weights live on the chip as differential pairs, W = (G+ − G−)/s. Forward and backward
passes use the chip's MVM (backward: transposed). Weight updates accumulate in a
high-precision variable χ in software, in µS; whenever |χ| ≥ ε (the device granularity: the
mean conductance step of one partial-SET pulse), ⌊|χ|/ε⌋ partial-SET pulses go to G+ (χ > 0)
or G− (χ < 0), and what was applied, n·ε, is subtracted from χ. Pairs whose devices climb
near saturation are refreshed: read, RESET both, and their difference programmed again.
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
from .program import program_and_verify


@dataclass
class UpdateRule:
    """How weight updates become pulses."""

    epsilon_uS: float = 0.75
    """Device granularity: mean conductance change of one partial-SET pulse [derived,
    pcm-physics.md]."""
    set_amplitude_uA: float = 90.0
    set_width_ns: float = 50.0
    max_pulses: int = 4
    """At most this many pulses per device per update (the rest stays in χ)."""
    g_range_uS: float = 10.0
    """|W| = max|W0| maps to this conductance: partial SET saturates near 10 µS
    (Nandakumar 2018 model), so pairs work in 0…g_range."""
    refresh_above_uS: float = 12.0
    """Refresh a pair when either device reads above this."""
    refresh_every: int = 50
    """Check for pairs to refresh every this many batches."""


@dataclass
class TrainingResult:
    epochs: int
    pulses_applied: int
    refreshed_pairs: int
    history: list[dict]
    status: str
    elapsed_s: float


class InSituTrainer:
    """Trains ``network`` with its weight layers on ``chip`` (an ``AnalogNetwork`` binding)."""

    def __init__(self, analog: AnalogNetwork, rule: UpdateRule | None = None) -> None:
        self.analog = analog
        self.rule = rule or UpdateRule()
        chip = analog.chip
        self.chip = chip
        # conductance scale: the initial weights' largest |w| at g_range
        self.analog.scales = [
            self.rule.g_range_uS / max(float(np.abs(w).max()), 1e-12) for w in analog.weights
        ]
        self.chi = [np.zeros(w.shape, dtype=np.float64) for w in analog.weights]
        self.pulses_applied = 0
        self.refreshed_pairs = 0
        self._addresses = []
        for k, weight in enumerate(analog.weights):
            plus = np.zeros(weight.shape, dtype=np.int64)
            minus = np.zeros(weight.shape, dtype=np.int64)
            tiles = np.zeros(weight.shape, dtype=np.int64)
            for block in analog._blocks_of(k):
                a_plus, a_minus = block.addresses(chip.config.columns)
                window = (
                    slice(block.in_start, block.in_stop),
                    slice(block.out_start, block.out_stop),
                )
                plus[window], minus[window], tiles[window] = a_plus, a_minus, block.tile
            self._addresses.append((tiles, plus, minus))

    def program_initial_weights(self, tolerance_uS: float = 0.3) -> None:
        """Program every pair to the network's initial weights."""
        tiles, addresses, targets = [], [], []
        for k, weight in enumerate(self.analog.weights):
            g = weight * self.analog.scales[k]
            tile, plus, minus = self._addresses[k]
            tiles += [tile.ravel(), tile.ravel()]
            addresses += [plus.ravel(), minus.ravel()]
            targets += [np.maximum(g, 0).ravel(), np.maximum(-g, 0).ravel()]
        program_and_verify(
            self.chip,
            np.concatenate(tiles),
            np.concatenate(addresses),
            np.concatenate(targets),
            tolerance_uS=tolerance_uS,
        )

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        lr: float,
        batch: int = 10,
        rng: np.random.Generator,
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
        with cancellable(
            emitter, epochs=epochs, lr=lr, batch=batch, epsilon_uS=self.rule.epsilon_uS
        ) as run:
            for epoch in range(1, epochs + 1):
                order = rng.permutation(len(x))
                for i in range(0, len(x), batch):
                    index = order[i : i + batch]
                    self._step(network, x[index], y[index], lr)
                    batches += 1
                    if batches % self.rule.refresh_every == 0:
                        self.refresh()
                record = {"epoch": epoch, "pulses_applied": self.pulses_applied}
                if x_test is not None:
                    record["test_accuracy"] = network.accuracy(
                        x_test, y_test, matmul=self.analog.matmul
                    )
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
        logits = network.forward(xb, training=True, matmul=self.analog.matmul)
        _loss, grad = softmax_cross_entropy(logits, yb)
        network.backward(grad, matmul_t=self.analog.matmul_t, input_grad=False)
        for k, layer in enumerate(network.weight_layers()):
            self.chi[k] -= lr * layer.grad_weight * self.analog.scales[k]
            layer.bias -= lr * layer.grad_bias  # biases stay digital
        self._apply_pulses()

    def _apply_pulses(self) -> None:
        """Turn whole multiples of ε in χ into partial-SET pulses, one command per round."""
        rule = self.rule
        for k, chi in enumerate(self.chi):
            count = np.minimum(np.floor(np.abs(chi) / rule.epsilon_uS), rule.max_pulses).astype(
                np.int64
            )
            if not count.any():
                continue
            tiles, plus, minus = self._addresses[k]
            target = np.where(chi > 0, plus, minus)
            for round_ in range(1, int(count.max()) + 1):
                due = count >= round_
                for tile in np.unique(tiles[due]):
                    here = due & (tiles == tile)
                    self.chip.pulse(
                        int(tile), target[here], rule.set_amplitude_uA, rule.set_width_ns
                    )
                    self.pulses_applied += int(here.sum())
            chi -= np.sign(chi) * count * rule.epsilon_uS

    def refresh(self) -> int:
        """Reprogram pairs with a device above ``refresh_above_uS``: RESET both, then program
        the pair's difference onto one device. Returns how many pairs were refreshed."""
        rule = self.rule
        refreshed = 0
        for k in range(len(self.chi)):
            tiles, plus, minus = self._addresses[k]
            for tile in np.unique(tiles):
                here = tiles == tile
                g_plus = self.chip.read(int(tile), plus[here])
                g_minus = self.chip.read(int(tile), minus[here])
                full = (g_plus > rule.refresh_above_uS) | (g_minus > rule.refresh_above_uS)
                if not full.any():
                    continue
                difference = (g_plus - g_minus)[full]
                a_plus, a_minus = plus[here][full], minus[here][full]
                addresses = np.concatenate([a_plus, a_minus])
                targets = np.concatenate([np.maximum(difference, 0), np.maximum(-difference, 0)])
                program_and_verify(self.chip, int(tile), addresses, targets)
                refreshed += int(full.sum())
        self.refreshed_pairs += refreshed
        return refreshed
