"""Paired comparison of two models scored on the same items.

Two accuracies measured on the same benchmark items are not independent samples: an item
that is hard for one model tends to be hard for the other. The right test looks only at the
items where the two disagree (McNemar's exact test: under "no difference", each discordant
item is equally likely to favour either model), and the interval of the difference comes
from resampling items, keeping each item's pair of verdicts together.

Used by ``r1ov eval compare`` and by the promotion gate, so both say the same thing.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class PairedComparison:
    """B against A on the items both scored; ``difference`` is accuracy(B) - accuracy(A)."""

    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci95: tuple[float, float]
    only_a_correct: int  # discordant items A got right and B wrong
    only_b_correct: int
    p_value: float  # McNemar exact, two-sided
    only_in_a: int  # items A scored that B did not (left out of the comparison)
    only_in_b: int

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["ci95"] = list(self.ci95)
        return out


def mcnemar_exact(only_a_correct: int, only_b_correct: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts (1.0 when there are none)."""
    discordant = only_a_correct + only_b_correct
    if discordant == 0:
        return 1.0
    return float(binomtest(only_b_correct, discordant, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, samples: int = 2000, seed: int = 0, name: str = ""
) -> tuple[float, float]:
    """95% percentile interval of mean(b) - mean(a), resampling items with their pair kept."""
    n = len(a)
    if n == 0 or samples == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    diff = b.astype(np.float64) - a.astype(np.float64)
    # Only the per-item difference matters, so draw item indices and average it: O(samples * n)
    # in chunks to keep memory flat on 100K-item benchmarks.
    means = np.empty(samples)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def compare(
    verdicts_a: Mapping[str, bool], verdicts_b: Mapping[str, bool], samples: int = 2000, seed: int = 0
) -> PairedComparison:
    """Compare two ``item id -> correct`` maps on the ids both contain.

    Raises ``ValueError`` when they share no item: a comparison on nothing is a mistake to
    report, not a tie.
    """
    shared = sorted(set(verdicts_a) & set(verdicts_b))
    if not shared:
        raise ValueError(
            f"the two score sets share no item id ({len(verdicts_a)} vs {len(verdicts_b)} items): "
            "were they scored on the same benchmark data?"
        )
    a = np.fromiter((bool(verdicts_a[i]) for i in shared), dtype=bool, count=len(shared))
    b = np.fromiter((bool(verdicts_b[i]) for i in shared), dtype=bool, count=len(shared))
    only_a = int(np.sum(a & ~b))
    only_b = int(np.sum(b & ~a))
    return PairedComparison(
        n=len(shared),
        accuracy_a=float(a.mean()),
        accuracy_b=float(b.mean()),
        difference=float(b.mean() - a.mean()),
        ci95=paired_bootstrap(a, b, samples=samples, seed=seed),
        only_a_correct=only_a,
        only_b_correct=only_b,
        p_value=mcnemar_exact(only_a, only_b),
        only_in_a=len(set(verdicts_a) - set(verdicts_b)),
        only_in_b=len(set(verdicts_b) - set(verdicts_a)),
    )


def format_p(p: float | None) -> str:
    """A p-value as people read it: scientific notation below 0.001 (1.91e-06, never 0.0000)."""
    if not isinstance(p, int | float) or p != p:
        return "n/a"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def format_percent(fraction: float | None, signed: bool = False) -> str:
    """A share as percent with one decimal, the unit of every human-facing report (the paper's
    tables); metrics and JSON keep fractions."""
    if not isinstance(fraction, int | float) or fraction != fraction:
        return "n/a"
    return f"{100 * fraction:+.1f}" if signed else f"{100 * fraction:.1f}"
