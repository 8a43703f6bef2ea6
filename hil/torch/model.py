"""``AnalogModel``: any ``torch.nn.Module`` with its ``nn.Linear`` and ``nn.Conv2d`` products
on a chip.

::

    import pcm_hil, torch
    from pcm_hil.torch import AnalogModel

    with pcm_hil.PcmChip.open("emulator?seed=1") as chip:
        analog = AnalogModel(model, chip)           # a copy; the model is left as it is
        analog.calibrate(x_train[:512])            # input ranges of every weight layer
        analog.program()                           # program-and-verify every weight
        chip.advance(86400)                        # a day later (emulator: virtual time)
        analog.compensate()                        # global drift compensation
        analog.recalibrate_batchnorm(x_train[:512])  # AdaBS, through the chip
        logits = analog(x_test)                    # every product on the chip

The weights become differential pairs of devices, one conductance scale per weight layer,
split over tiles and windows where a layer is larger than a tile (``pcm_hil.analog.mapping``,
the same mapping as the numpy networks'); biases, activations, pooling, normalization,
residual additions and softmax run in torch. A model too large for the chip is refused,
naming the devices it needs and the chip has. Devices program-and-verify finds stuck are
corrected digitally. Works on every resource: the embedded emulator, a served one, a chip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from pcm_hil.analog.network import AnalogNetwork
from pcm_hil.documents.events import Listener
from pcm_hil.procedures.program import (
    SETTLE_S,
    TOLERANCE_REL,
    TOLERANCE_US,
    ProgramResult,
)
from pcm_hil.torch.network import TorchNetwork


class AnalogModel(nn.Module):
    """A copy of ``model`` whose weight layers' products run on ``chip`` (see the module).
    ``weight_percentile``: the percentile of |w| per layer mapped to g_max (larger weights
    clipped); ``input_percentile``: of |input| mapped to the DAC's full scale."""

    def __init__(
        self,
        model: nn.Module,
        chip: Any,
        *,
        weight_percentile: float = 99.5,
        input_percentile: float = 99.9,
    ) -> None:
        super().__init__()
        self.network = TorchNetwork(model)
        self.analog = AnalogNetwork(
            chip,
            self.network,
            input_percentile=input_percentile,
            weight_percentile=weight_percentile,
        )
        self.model = self.network.model  # its parameters and buffers, as a module's

    @property
    def chip(self) -> Any:
        return self.analog.chip

    def calibrate(self, x: Any) -> None:
        """Input ranges of every weight layer from a software forward pass over ``x`` (a
        tensor or array of inputs), and the drive that keeps the columns' currents within
        the ADC's range."""
        self.analog.calibrate_inputs(_numpy(x))

    def program(
        self,
        *,
        tolerance_uS: float = TOLERANCE_US,
        tolerance_rel: float | None = TOLERANCE_REL,
        settle_s: float = SETTLE_S,
        max_iterations: int = 30,
        listeners: Iterable[Listener] = (),
    ) -> ProgramResult:
        """Program-and-verify every weight's devices; note the stuck ones (corrected
        digitally); take the reference of global drift compensation."""
        return self.analog.program(
            tolerance_uS=tolerance_uS,
            tolerance_rel=tolerance_rel,
            settle_s=settle_s,
            max_iterations=max_iterations,
            listeners=listeners,
        )

    def compensate(self) -> list[float]:
        """Global drift compensation: each weight layer's gain from its conductance read now
        against the reference taken after programming. Returns the gains."""
        return self.analog.compensate_drift()

    def no_compensation(self) -> None:
        """Drop the drift compensation (every gain 1)."""
        self.analog.no_compensation()

    def recalibrate_batchnorm(self, x: Any, *, batch: int = 256) -> None:
        """AdaBS: every batch norm's statistics re-estimated from ``x`` with the products
        on the chip."""
        self.network.recalibrate_batchnorm(_numpy(x), batch=batch, matmul=self.analog.matmul)

    def devices(self) -> int:
        """Devices the weights occupy: two per weight."""
        return int(sum(2 * layer.weight.size for layer in self.network.weight_layers()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output with every weight layer's product on the chip (no gradient)."""
        with torch.no_grad():
            return self.network.run(self.network.tensor(x), self.analog.matmul)

    def accuracy(self, x: Any, y: Any, *, batch: int = 1024) -> float:
        """Fraction (0…1) of ``x`` classified as ``y``, on the chip."""
        return self.network.accuracy(_numpy(x), _numpy(y), batch=batch, matmul=self.analog.matmul)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
