"""Tests with the pretraining run as the experimental unit.

When each arm of a comparison has several pretraining runs, each evaluated on the same support
draws (seeds), the support draws are nested in the runs and the runs are the units that were
randomised: a test over the seeds alone (``compare --pool``) conditions on the runs made and
leaves the run-to-run variation out. Under the nested model
``y[arm, run, seed] = mu_arm + r_run + e`` with every run on the same seeds, the difference of
the arms' mean accuracies has variance ``(sigma_r^2 + sigma_e^2 / E) (1/P_a + 1/P_b)``, which
the spread of the run means estimates: the two-sample Student-t test on run means (pooled
variance, ``P_a + P_b - 2`` degrees of freedom) is then the exact F test of the mixed model's
fixed effect. :func:`run_means_test` is that test (``scipy.stats.ttest_ind``);
:func:`mixedlm_test` fits the mixed model itself (statsmodels ``MixedLM``, REML, runs as the
random effect, the seeds as fixed effects because every run shares them), for designs where
runs miss some seeds. Seed effects shared by every run cancel in both.

Also here: the minimum detectable difference at 80 % power of a design
(``statsmodels.stats.power``) and the probability, under no difference, of the run pairings'
agreement (the exact Mann-Whitney distribution of ``scipy.stats.mannwhitneyu``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

from sarfewshot.errors import SarFewShotError

__all__ = [
    "RUN_TESTS",
    "agreement",
    "mdd_paired",
    "mdd_run_means",
    "mixedlm_test",
    "run_means_test",
]

RUN_TESTS = {
    "means": "two-sample t-test on run means (exact test of the nested mixed model)",
    "mixedlm": "mixed model (statsmodels MixedLM, REML; runs random, seeds fixed), Wald t",
}
POWER = 0.8
ALPHA = 0.05


def _statsmodels(what: str):
    """Import statsmodels or say which extra brings it."""
    try:
        import statsmodels.api as sm
        import statsmodels.stats.power as power
    except ImportError as err:  # pragma: no cover - statsmodels is an install requirement
        raise SarFewShotError(
            f"{what} needs statsmodels: pip install statsmodels (or pip install -e .)"
        ) from err
    return sm, power


def run_means_test(means_a: Sequence[float], means_b: Sequence[float]) -> dict[str, Any]:
    """Two-sided two-sample Student-t test (pooled variance) of ``mean(a) - mean(b)``.

    Args:
        means_a, means_b: one value per pretraining run (its mean over the shared seeds).

    Returns:
        ``{"diff", "ci_low", "ci_high", "p", "df", "note"}``; the interval is the unadjusted
        95 % Student-t interval over runs. Undefined numbers (fewer than 3 runs in all, or run
        means without spread) are None with the reason in ``note``.
    """
    from scipy import stats

    a, b = np.asarray(means_a, dtype=float), np.asarray(means_b, dtype=float)
    diff = float(a.mean() - b.mean())
    df = len(a) + len(b) - 2
    out = {"diff": diff, "ci_low": None, "ci_high": None, "p": None, "df": df, "note": ""}
    if df < 1:
        out["note"] = "run-unit test n/a: one run per arm"
        return out
    spread = sum(float(((x - x.mean()) ** 2).sum()) for x in (a, b))
    if spread <= 1e-18:
        out["note"] = "run-unit test n/a: the run means have no spread"
        return out
    res = stats.ttest_ind(a, b, equal_var=True)
    ci = res.confidence_interval(0.95)
    out.update(p=float(res.pvalue), ci_low=float(ci.low), ci_high=float(ci.high))
    return out


def _long_table(tables: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """acc / arm / run / seed columns of the runs x seeds tables of arm a (0) and arm b (1)."""
    acc, arm, run, seed = [], [], [], []
    for k, table in enumerate(tables):
        for r, row in enumerate(np.asarray(table, dtype=float)):
            for s, value in enumerate(row):
                if np.isfinite(value):
                    acc.append(value), arm.append(1 - k), run.append(f"{k}-{r}"), seed.append(s)
    return {"acc": np.array(acc), "arm": np.array(arm), "run": np.array(run), "seed": seed}


def mixedlm_test(table_a: np.ndarray, table_b: np.ndarray) -> dict[str, Any]:
    """Arm difference from ``acc ~ arm + C(seed)`` with a random intercept per run.

    Args:
        table_a, table_b: runs x seeds accuracies of each arm (NaN where a run lacks a seed).

    Returns:
        As :func:`run_means_test`. The p-value and interval use Student's t with
        ``runs - 2`` degrees of freedom on the REML standard error (statsmodels reports a
        normal z, which with a handful of runs is far too liberal).
    """
    from scipy import stats

    sm, _ = _statsmodels("--run-test mixedlm")
    data = _long_table([table_a, table_b])
    n_runs = len(table_a) + len(table_b)
    df = n_runs - 2
    out = {"diff": None, "ci_low": None, "ci_high": None, "p": None, "df": df, "note": ""}
    seeds = sorted(set(data["seed"]))
    exog = np.column_stack(
        [np.ones(len(data["acc"])), data["arm"]]
        + [np.equal(data["seed"], s).astype(float) for s in seeds[1:]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary / convergence warnings: see the note
        fit = sm.MixedLM(data["acc"], exog, groups=data["run"]).fit(reml=True)
    out["diff"] = float(fit.fe_params[1])
    if df < 1:
        out["note"] = "run-unit test n/a: one run per arm"
        return out
    se = float(fit.bse_fe[1])
    if not math.isfinite(se) or se <= 0:
        out["note"] = "MixedLM gave no standard error"
        return out
    half = float(stats.t.ppf(0.975, df)) * se
    out.update(
        ci_low=out["diff"] - half,
        ci_high=out["diff"] + half,
        p=float(2 * stats.t.sf(abs(out["diff"]) / se, df)),
    )
    if float(np.asarray(fit.cov_re)[0, 0]) <= 1e-12:
        out["note"] = "MixedLM: run variance estimated at 0"
    return out


def mdd_run_means(
    means_a: Sequence[float], means_b: Sequence[float], alpha: float = ALPHA
) -> float | None:
    """Smallest difference the run-means t-test detects with 80 % power (two-sided ``alpha``).

    The effect size from ``statsmodels.stats.power.TTestIndPower`` for these run counts, times
    the observed pooled SD of the run means. None without at least one spare degree of freedom.
    """
    _, power = _statsmodels("the minimum detectable difference")
    a, b = np.asarray(means_a, dtype=float), np.asarray(means_b, dtype=float)
    df = len(a) + len(b) - 2
    if df < 1:
        return None
    sd = math.sqrt(sum(float(((x - x.mean()) ** 2).sum()) for x in (a, b)) / df)
    effect = power.TTestIndPower().solve_power(
        nobs1=len(a), ratio=len(b) / len(a), alpha=alpha, power=POWER
    )
    return float(effect) * sd


def mdd_paired(diffs: Sequence[float], alpha: float = ALPHA) -> float | None:
    """Smallest mean difference the paired t-test over ``diffs`` detects with 80 % power."""
    _, power = _statsmodels("the minimum detectable difference")
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return None
    effect = power.TTestPower().solve_power(nobs=len(d), alpha=alpha, power=POWER)
    return float(effect) * float(d.std(ddof=1))


def agreement(means_a: Sequence[float], means_b: Sequence[float]) -> dict[str, Any]:
    """How many run pairings (one run of a, one of b) have the sign of the mean difference.

    Returns:
        ``{"agree", "pairings", "p"}``: ``p`` is the probability, with no difference between
        the arms (exchangeable run means, no ties), that at least ``agree`` pairings point one
        way: the two-sided exact Mann-Whitney p-value of the run means. All 4 pairings of 2 x 2
        runs agree with probability 2 / C(4, 2) = 1/3; all 2 of 2 x 1 with 2 / 3. None when
        some pairing is a tie.
    """
    from scipy import stats

    a, b = np.asarray(means_a, dtype=float), np.asarray(means_b, dtype=float)
    gaps = np.subtract.outer(a, b)
    sign = np.sign(a.mean() - b.mean()) or 1.0
    agree = int((np.sign(gaps) == sign).sum())
    p = None
    if np.all(gaps != 0) and agree * 2 >= gaps.size:
        p = float(stats.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue)
    return {"agree": agree, "pairings": int(gaps.size), "p": p}
