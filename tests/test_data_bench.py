"""The data benchmarks' settings: the scale bench's sizes come from the environment, checked.
(The benchmarks themselves: ``python -m r1ov.bench scale`` and ``python -m r1ov.bench data``.)"""

from __future__ import annotations

import pytest

from r1ov.bench import scale


def test_scale_sizes_default_to_the_release_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(scale.SIZES_ENV, raising=False)
    assert scale.sizes() == (15_000, 155_000)
    monkeypatch.setenv(scale.SIZES_ENV, "300,3000")
    assert scale.sizes() == (300, 3000)


@pytest.mark.parametrize("given", ["3000", "3000,300", "a,b", "0,10"])
def test_bad_scale_sizes_end_in_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv(scale.SIZES_ENV, given)
    with pytest.raises(SystemExit, match=f"^{scale.SIZES_ENV}="):
        scale.sizes()
