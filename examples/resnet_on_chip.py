"""A ResNet with batch norm, trained in torch on the scikit-learn digits, on an emulated PCM
chip: accuracy right after programming, after a day and after a year — without compensation,
with global drift compensation, and with batch-norm statistics recalibrated through the chip.

    .venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[torch]'
    .venv/bin/python examples/resnet_on_chip.py            # ~20 s on 2 cores
    .venv/bin/python examples/resnet_on_chip.py --resource TCPIP0::192.168.1.20::5025::SOCKET

The same as ``pcm-hil infer --network resnet``, written out with the Python API.
"""

from __future__ import annotations

import argparse

import pcm_hil
from pcm_hil.analog.recipes import NOISE_ETA
from pcm_hil.nn.data import load_digits_split
from pcm_hil.torch import AnalogModel
from pcm_hil.torch.training import accuracy
from pcm_hil.torch.zoo import trained_resnet

DAY_S = 86400.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resource", default="emulator?seed=1", help="the chip (default: emulated)"
    )
    parser.add_argument(
        "--times", type=float, nargs="+", default=[1.0, DAY_S, 365 * DAY_S],
        help="seconds after programming (default: 1 s, 1 day, 1 year)",
    )  # fmt: skip
    args = parser.parse_args()

    x_train, _y_train, x_test, y_test = data = load_digits_split(seed=0)
    model = trained_resnet(data, noise_eta=NOISE_ETA)  # noise-aware: it keeps its accuracy better
    print(f"software: {accuracy(model, x_test, y_test):.2%}")
    with pcm_hil.PcmChip.open(args.resource) as chip:
        clock = pcm_hil.ChipClock(chip)
        analog = AnalogModel(model, chip)
        calibration = x_train[:512]
        analog.calibrate(calibration)
        result = analog.program()
        print(
            f"programmed {result.target_uS.size:,} devices, {result.converged.mean():.1%} converged"
        )
        programmed_at = clock.now()
        for t in args.times:
            clock.wait_until(programmed_at + t)  # virtual time on the emulator
            analog.no_compensation()
            none = analog.accuracy(x_test, y_test)
            analog.compensate()
            gdc = analog.accuracy(x_test, y_test)
            analog.recalibrate_batchnorm(calibration)
            both = analog.accuracy(x_test, y_test)
            print(f"t = {t:>10.0f} s: none {none:.2%}, GDC {gdc:.2%}, GDC + batch norm {both:.2%}")


if __name__ == "__main__":
    main()
