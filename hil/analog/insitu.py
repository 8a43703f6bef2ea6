"""Mixed-precision training with the weights on the chip (Nandakumar et al. 2020).

The weights live on the chip as differential pairs, W = (G+ − G−)/s. Forward and backward
passes use the chip's MVM (backward: transposed). Weight updates accumulate in a
high-precision variable χ in software, in µS; whenever |χ| ≥ ε (the device granularity),
⌊|χ|/ε⌋ partial-SET pulses (at most ``max_pulses``) go to G+ (χ > 0) or G− (χ < 0), one
batched pulse command per tile per round, and what was applied, n·ε, is subtracted from χ.
Pairs whose devices climb too high are refreshed: read, RESET both, and their difference
programmed again onto one device.

Choices, tuned on the default emulator (digits MLP, 128 hidden units, 20 epochs, batch 10,
lr 0.2 decaying linearly to lr/20; see ``UpdateRule`` for each):

- Devices are programmed (initially and at refresh) by RESET, a few very weak conditioning
  pulses, then closed-loop partial-SET steps. The conditioning pulses (strength ≈ 0.02,
  ~0.03 µS each) spend the first-pulse excess of the partial-SET response while G ≈ 0: the
  first pulse after a melt-quench has a mean step of 2.3 µS and a std of 2.4 µS at strength 1
  (std ≈ mean at any strength, against ≈ 0.3·mean after a few pulses), and without
  conditioning every pair starts its updates, after each (re)programming, with such pulses.
  This was the largest single gain (chip − software: −1.1 → −0.4 points over 6 chips).
- Every pulse is stretched or shortened (pulse width at 90 µA) so that its *expected* step
  is ε, from the device's estimated conductance and pulse count and the published
  partial-SET model (``StepModel``): steps no longer shrink as G rises, and devices can go
  past the ~10.5 µS where reference pulses stop adding conductance.
- Pairs are refreshed when both devices exceed 3 µS: the common conductance adds nothing to
  W but raises the noise of each pulse (std ΔG = 0.091·G + …) and of each read.
- Per-layer conductance ranges: the first layer's weights change little during training
  (16 µS at max|W0|), the output layer's grow to ~2× their initial range (8 µS at
  max|W0|, so they stay under the ~30 µS crystalline ceiling).
- Each input vector is scaled to the DAC's full range (undone digitally), and each layer's
  drive is kept low enough for its currents to fit the ADC (``calibrate_drive``).

What remains (mean −0.4 points against floating point over 36 chips when tuned; measured
again with the weights packed into column strips: −0.61 ± 0.43 points over the chips of seeds
0–15, from −1.48 to 0.00, ``benchmarks/bench_torch.py --only insitu``): the read noise of
every MVM (~0.3 point: without it −0.2), the ε granularity itself (−0.25 on a noiseless
chip) and the partial-SET noise (~0.1).

``train_on_chip`` runs the floating-point baseline (same network, initial weights, shuffles
and schedule; plain SGD) beside the chip run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.documents.analog import TrainEnd, TrainEpoch, TrainStart
from pcm_hil.documents.events import Emitter, Listener, cancellable, summary_values
from pcm_hil.nn.network import Network
from pcm_hil.nn.train import softmax_cross_entropy


@dataclass(frozen=True)
class StepModel:
    """The mean partial-SET step the trainer expects, µS: s·(offset + boost·e^(−n/n_decay))
    − slope·G for a device at G with n pulses since its last melt-quench (the published
    Nandakumar JAP 2018 model, pcm-physics.md [derived]; a real chip would be characterized
    instead). s is the pulse strength, taken proportional to the pulse width at the
    reference amplitude (s = 1 at 90 µA, 50 ns)."""

    offset_uS: float = 0.880
    boost_uS: float = 1.40
    slope: float = 0.084
    n_decay: float = 2.6

    def mean(self, g_uS, n_pulses, strength):
        """Expected step of a pulse of ``strength`` (never negative)."""
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
    """How weight updates become pulses, and how pairs are programmed and refreshed."""

    epsilon_uS: float = 0.75
    """Device granularity: the conductance change one partial-SET pulse stands for (the
    published ε ≈ 0.75 µS; 0.5 and 1.0 did no better)."""
    set_amplitude_uA: float = 90.0
    set_width_ns: float = 50.0
    """The pulse of strength 1, the reference of the step model."""
    compensate: bool = True
    """Stretch or shorten each pulse so that its expected step is ε, from the device's
    estimated conductance and pulse count (False: every pulse is the reference pulse)."""
    width_min_ns: float = 10.0
    width_max_ns: float = 200.0
    """Pulse-width range (strength 0.2…4 at 90 µA)."""
    max_pulses: int = 4
    """At most this many pulses per device per update (the rest stays in χ)."""
    g_range_uS: float | tuple[float, ...] = (16.0, 8.0)
    """|W| = max|W0| maps to this conductance: one value, or one per weight layer (the last
    value repeats for further layers)."""
    refresh_above_uS: float = 25.0
    """Refresh a pair when a device reads above this (near the ~30 µS crystalline ceiling)
    and the pair's difference fits below it."""
    refresh_common_uS: float = 3.0
    """Refresh a pair when both devices read above this (conductance that only adds noise)."""
    refresh_every: int = 50
    """Read every pair and refresh those due every this many batches."""
    program_tolerance_uS: float = 0.3
    """Programming stops when a device reads within this below its target."""
    reset_amplitude_uA: float = 550.0
    reset_width_ns: float = 50.0
    """The RESET (melt-quench) pulse that starts programming, to ≈ 0.1 µS."""
    condition_pulses: int = 8
    """Weak partial-SET pulses after each RESET (see the module documentation)."""
    condition_amplitude_uA: float = 45.0
    condition_width_ns: float = 10.0
    """Strength (45 − 40)/(90 − 40) · 10/50 = 0.02: each adds ~0.03 µS."""
    row_scaling: bool = True
    """Scale each input vector to the DAC's full range, undone digitally."""
    output_headroom: float = 0.8
    """Drive each layer's inputs at most so hard that its columns' currents stay within this
    fraction of the ADC's full scale (``calibrate_drive``)."""
    drive_samples: int = 512
    """Training inputs used to calibrate the drive."""


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


#: The tuned schedule for the digits MLP (see the module documentation).
DEFAULT_HIDDEN = 128
DEFAULT_EPOCHS = 20
DEFAULT_LR = 0.2
DEFAULT_BATCH = 10
DEFAULT_SCHEDULE = "linear"

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
        # conductance scale: the initial weights' largest |w| at the layer's g_range
        ranges = np.atleast_1d(np.asarray(self.rule.g_range_uS, dtype=np.float64))
        self.analog.scales = [
            float(ranges[min(k, ranges.size - 1)]) / max(float(np.abs(w).max()), 1e-12)
            for k, w in enumerate(analog.weights)
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

    def calibrate_drive(self, x: np.ndarray) -> list[float]:
        """Set each layer's drive (``AnalogNetwork.voltage_gain``, ≤ 1) so that the columns'
        currents for (row-scaled) inputs like ``x`` stay within ``output_headroom`` of the
        ADC's full scale, from the estimated conductances: the forward pass in software with
        the weights they hold. Returns the gains."""
        analog = self.analog
        sample = x[: self.rule.drive_samples]
        seen: dict[int, np.ndarray] = {}

        def product(k: int, x2d: np.ndarray) -> np.ndarray:
            seen[k] = x2d
            g = self.g_est[k]
            return x2d @ ((g[0] - g[1]) / analog.scales[k])

        analog.network.forward(sample, matmul=product)
        full_scale = float(self.chip.config.mvm_output_max_uA)
        for k, x2d in seen.items():
            if self.rule.row_scaling:
                volts = x2d / _row_max(x2d)
            else:
                volts = np.clip(x2d / analog.input_scale[k], -1.0, 1.0)
            volts = volts * analog.v_max
            g = self.g_est[k]
            currents = np.abs(np.concatenate([volts @ g[0], volts @ g[1]], axis=1))
            largest = max(float(np.percentile(currents, 99.9)), 1e-12)
            analog.voltage_gain[k] = min(1.0, self.rule.output_headroom * full_scale / largest)
        return list(analog.voltage_gain)

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
        swap = np.r_[pairs : 2 * pairs, 0:pairs]  # each device's partner
        target = np.where(stuck[swap] & ~stuck, read[swap], target)
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
        fp_accuracy: float | None = None,
        step: Callable[[np.ndarray, np.ndarray, float], None] | None = None,
    ) -> TrainingResult:
        """SGD on softmax cross-entropy; every product on the chip; updates as pulses.
        ``fp_accuracy``: the floating-point reference, recorded beside the run. ``step(xb,
        yb, lr)``: one batch's forward and backward passes and update (default: the numpy
        network's, ``numpy_step``; a torch model brings its own, ``pcm_hil.torch.insitu``)."""
        network = self.analog.network
        step = step or self.numpy_step
        emitter = Emitter(listeners, total=epochs)
        history = []
        started = time.perf_counter()
        batches = 0
        rates = epoch_learning_rates(lr, epochs, schedule)
        self.calibrate_drive(x)
        start = TrainStart(
            epochs=epochs,
            lr=lr,
            batch=batch,
            epsilon_uS=self.rule.epsilon_uS,
            fp_accuracy=fp_accuracy,
        )
        with cancellable(emitter, start, TrainEnd) as run:
            for epoch in range(1, epochs + 1):
                order = rng.permutation(len(x))
                for i in range(0, len(x), batch):
                    index = order[i : i + batch]
                    step(x[index], y[index], rates[epoch - 1])
                    batches += 1
                    if batches % self.rule.refresh_every == 0:
                        self.refresh()
                        self.calibrate_drive(x)
                document = TrainEpoch(
                    epoch=epoch,
                    pulses_applied=self.pulses_applied,
                    refreshed_pairs=self.refreshed_pairs,
                    test_accuracy=(
                        network.accuracy(x_test, y_test, matmul=self.matmul)
                        if x_test is not None and y_test is not None
                        else None
                    ),
                )
                history.append(summary_values(document))  # without test_accuracy if no test set
                emitter.step(document)
        emitter.end(TrainEnd(status=run.status, pulses_applied=self.pulses_applied))
        return TrainingResult(
            len(history),
            self.pulses_applied,
            self.refreshed_pairs,
            history,
            run.status,
            time.perf_counter() - started,
        )

    def numpy_step(self, xb: np.ndarray, yb: np.ndarray, lr: float) -> None:
        """One batch of a numpy network: forward and backward on the chip, biases updated
        digitally, weight gradients into χ and pulses (``update``)."""
        network: Network = self.analog.network  # type: ignore[assignment]
        network.zero_grad()
        logits = network.forward(xb, training=True, matmul=self.matmul)
        _loss, grad = softmax_cross_entropy(logits, yb)
        network.backward(grad, matmul_t=self.matmul_t, input_grad=False)
        layers = network.weight_layers()
        for layer in layers:
            layer.bias -= lr * layer.grad_bias  # biases stay digital
        self.update([layer.grad_weight for layer in layers], lr)

    def update(self, grad_weights: list[np.ndarray], lr: float) -> None:
        """SGD on the chip: each weight layer's gradient (inputs × outputs), times the
        learning rate and its conductance scale, accumulates in χ (µS); whole multiples of
        ε become pulses (``apply_pulses``)."""
        for k, grad in enumerate(grad_weights):
            self.chi[k] -= lr * grad * self.analog.scales[k]
        self.apply_pulses()

    def apply_pulses(self) -> None:
        """Turn whole multiples of ε in χ into partial-SET pulses, one command per tile per
        round; subtract what was applied from χ."""
        rule = self.rule
        for k, chi in enumerate(self.chi):
            chi[~self.live[k]] = 0.0
            side = (chi < 0).astype(np.int64)
            tiles = self.tiles[k]
            g, n = self.g_est[k], self.n_est[k]
            epsilon = rule.epsilon_uS
            count = np.minimum(np.floor(np.abs(chi) / epsilon), rule.max_pulses).astype(np.int64)
            if not count.any():
                continue
            for round_ in range(1, int(count.max()) + 1):
                i, j = np.nonzero(count >= round_)
                s = side[i, j]
                if rule.compensate:
                    strength = self.model.strength_for(epsilon, g[s, i, j], n[s, i, j])
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
    """Each row's largest |value| (1 for all-zero rows), as a column."""
    rows = np.abs(a).max(axis=1, keepdims=True)
    return np.where(rows > 0, rows, 1.0)


def train_on_chip(
    chip,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    *,
    hidden: int = DEFAULT_HIDDEN,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    batch: int = DEFAULT_BATCH,
    seed: int = 0,
    listeners: Iterable[Listener] = (),
    rule: UpdateRule | None = None,
    schedule: str = DEFAULT_SCHEDULE,
) -> dict:
    """Train ``zoo.mlp(seed, hidden)`` on ``data`` = (x_train, y_train, x_test, y_test) twice,
    from the same initial weights, with the same shuffles (both from ``seed``) and the same
    learning-rate schedule: in floating point (plain SGD, no momentum) and in situ on
    ``chip``. ``listeners`` get the chip run's events (one step per epoch, with its test
    accuracy on the chip).

    Returns ``fp_accuracy`` and ``chip_accuracy`` (test, 0…1; the chip's through its MVM),
    ``epochs``, ``pulses_applied``, ``elapsed_s`` (both runs) and ``refreshed_pairs``.
    """
    from pcm_hil.nn.train import train
    from pcm_hil.nn.zoo import mlp

    started = time.perf_counter()
    x_train, y_train, x_test, y_test = data
    rates = epoch_learning_rates(lr, epochs, schedule)
    software = mlp(np.random.default_rng(seed), hidden=hidden)
    shuffles = np.random.default_rng([seed, 1])
    for rate in rates:  # one call per epoch: the same shuffles as one call for all epochs
        train(
            software, x_train, y_train, epochs=1, lr=rate, batch=batch, rng=shuffles, momentum=0.0
        )
    fp_accuracy = software.accuracy(x_test, y_test)

    network = mlp(np.random.default_rng(seed), hidden=hidden)
    analog = AnalogNetwork(chip, network)
    analog.calibrate_inputs(x_train)  # used only without row scaling
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
        x_test=x_test,
        y_test=y_test,
        listeners=listeners,
        fp_accuracy=fp_accuracy,
    )
    if result.history:
        chip_accuracy = result.history[-1]["test_accuracy"]
    else:
        chip_accuracy = network.accuracy(x_test, y_test, matmul=trainer.matmul)
    return {
        "fp_accuracy": float(fp_accuracy),
        "chip_accuracy": float(chip_accuracy),
        "epochs": result.epochs,
        "pulses_applied": result.pulses_applied,
        "elapsed_s": time.perf_counter() - started,
        "refreshed_pairs": result.refreshed_pairs,
    }
