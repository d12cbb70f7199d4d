"""Mean accuracy over a crossed design: pretraining runs x evaluation seeds.

With P pretraining runs of one method, each evaluated on the same E support-set draws, the
accuracy y[p, e] varies with the run, with the draw, and with their interaction. An interval
over the E seeds of one run (what a leaderboard row gives) leaves the run-to-run variation out.
Under the two-way random-effects model y = mu + a_p + b_e + eps, the variance of the grand mean
is sigma_a^2 / P + sigma_b^2 / E + sigma_eps^2 / (P E), which the ANOVA mean squares estimate
without bias as (MS_run + MS_seed - MS_resid) / (P E). That estimate can fall below zero with
few runs, so :func:`crossed_interval` uses the conservative (MS_run + MS_seed) / (P E), never
smaller, with Satterthwaite's degrees of freedom and a Student-t quantile (``scipy.stats.t``).
With P = 2 those degrees of freedom can be close to 1: the interval is then wide, which is what
two pretraining runs can say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CrossedSummary", "crossed_interval"]


@dataclass(frozen=True)
class CrossedSummary:
    """The grand mean of a runs x seeds table and its 95 % half-width.

    Attributes:
        runs, seeds: P and E.
        mean: mean over all P x E values.
        ci95: Student-t 95 % half-width of the grand mean (None with a single value).
        df: Satterthwaite degrees of freedom of that interval (None with a single value).
        run_means: the mean of each run over the seeds.
    """

    runs: int
    seeds: int
    mean: float
    ci95: float | None
    df: float | None
    run_means: tuple[float, ...]


def _mean_squares(y: np.ndarray) -> tuple[float, float]:
    """MS of the runs (rows) and of the seeds (columns) of a two-way table."""
    p, e = y.shape
    grand = y.mean()
    ms_run = e * float(((y.mean(axis=1) - grand) ** 2).sum()) / (p - 1) if p > 1 else 0.0
    ms_seed = p * float(((y.mean(axis=0) - grand) ** 2).sum()) / (e - 1) if e > 1 else 0.0
    return ms_run, ms_seed


def crossed_interval(values: np.ndarray | list[list[float]]) -> CrossedSummary:
    """Grand mean and 95 % interval of ``values[run][seed]`` (see the module docstring).

    With one run this is the usual Student-t interval over the seeds.

    Raises:
        ValueError: an empty or ragged table (every run needs every seed).
    """
    from scipy import stats

    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.size == 0:
        raise ValueError("crossed_interval() needs a runs x seeds table with every cell filled")
    p, e = y.shape
    run_means = tuple(float(v) for v in y.mean(axis=1))
    if p * e == 1:
        return CrossedSummary(p, e, float(y.mean()), None, None, run_means)
    ms_run, ms_seed = _mean_squares(y)
    var = (ms_run + ms_seed) / (p * e)
    terms = [ms**2 / dof for ms, dof in ((ms_run, p - 1), (ms_seed, e - 1)) if dof > 0]
    denom = math.fsum(terms)
    if var == 0.0 or denom == 0.0:
        return CrossedSummary(p, e, float(y.mean()), 0.0, None, run_means)
    df = (ms_run + ms_seed) ** 2 / denom
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(var)
    return CrossedSummary(p, e, float(y.mean()), half, df, run_means)
