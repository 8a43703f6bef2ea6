"""What a fit says of one parameter, and the least-squares fit every twin fit uses.

An ``Estimate`` is a value with its standard error and the runs it came from. ``fit`` wraps
``scipy.optimize.least_squares`` (a trust-region solver with bounds): the standard errors come
from the Jacobian at the solution, ``cov = (JᵀJ)⁻¹·χ²/dof`` — the residual scatter scales them,
so a model that fits worse than the stated errors gets wider uncertainties, never narrower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import least_squares


@dataclass(frozen=True)
class Estimate:
    """A fitted parameter: ``value`` in the parameter's unit, ``uncertainty`` one standard
    error in the same unit, and the ``runs`` it was fitted from."""

    value: float
    uncertainty: float
    runs: tuple[int, ...] = ()

    @property
    def identified(self) -> bool:
        """Whether the data pin the value down: finite, with an uncertainty below half the
        value's size (a wider one says the runs hardly constrain it)."""
        return bool(
            np.isfinite(self.value)
            and np.isfinite(self.uncertainty)
            and self.uncertainty < 0.5 * abs(self.value)
        )


def fit(
    residuals: Callable[[np.ndarray], np.ndarray],
    start: ArrayLike,
    lower: ArrayLike,
    upper: ArrayLike,
    fixed: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``residuals(p)`` (already divided by their standard errors) from
    ``start`` within ``lower``…``upper``, the parameters marked ``fixed`` held at their start:
    (the best parameters, their standard errors; NaN where the data do not constrain one or
    it was held)."""
    low, high = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    x0 = np.clip(np.asarray(start, dtype=np.float64), low, high)
    free = ~np.asarray(fixed if fixed is not None else np.zeros(x0.size, bool), dtype=bool)
    errors = np.full(x0.size, np.nan)
    if not free.any():
        return x0, errors

    def of(q: np.ndarray) -> np.ndarray:
        p = x0.copy()
        p[free] = q
        return p

    bounds = (low[free], high[free])
    solution = least_squares(
        lambda q: residuals(of(q)), x0[free], bounds=bounds, x_scale="jac", method="trf"
    )
    jacobian = solution.jac
    dof = max(jacobian.shape[0] - jacobian.shape[1], 1)
    chi2 = float(np.sum(solution.fun**2)) / dof
    try:
        covariance = np.linalg.inv(jacobian.T @ jacobian) * max(chi2, 1.0)
        diagonal = np.diag(covariance)
        errors[free] = np.sqrt(np.where(diagonal >= 0, diagonal, np.nan))
    except np.linalg.LinAlgError:
        pass
    return of(solution.x), errors
