"""Any PyTorch model on the chip (the ``torch`` extra): ``AnalogModel`` runs a model's
``nn.Linear`` and ``nn.Conv2d`` products on a chip, everything else in torch.

Install with ``pip install -e '.[torch]'`` (a CPU build of torch is enough).
"""

from pcm_hil.torch.model import AnalogModel
from pcm_hil.torch.network import TorchNetwork

__all__ = ["AnalogModel", "TorchNetwork"]
