"""The numba toolbox: a true fused multiply-add, and a disk cache keyed on the whole package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.indicators import jit as toolbox
from engine.indicators import kernel


@toolbox.jit
def _fused(a, b, c):  # noqa: ANN001, ANN202
    return toolbox.fma(a, b, c)


def test_fma_rounds_once() -> None:
    # 0.1 * 10 is exactly 1 + 2**-54 before rounding; unfused, the product rounds to 1.0.
    assert 0.1 * 10.0 - 1.0 == 0.0
    assert _fused(0.1, 10.0, -1.0) == 2.0**-54
    assert _fused(np.float64(3.0), 2.0, 1.0) == 7.0


def test_kernel_cache_is_stamped_with_every_module_of_the_package() -> None:
    locator = kernel.run._cache._impl._locator
    assert isinstance(locator, toolbox._PackageStamp)
    assert locator.get_source_stamp() == toolbox.package_stamp()


def test_an_edit_to_any_module_changes_the_stamp(tmp_path: Path) -> None:
    for module in Path(toolbox.__file__).parent.glob("*.py"):
        (tmp_path / module.name).write_bytes(module.read_bytes())
    before = toolbox.stamp_of(tmp_path)
    assert before == toolbox.package_stamp()
    with (tmp_path / "momentum.py").open("a") as f:
        f.write("\n")
    assert toolbox.stamp_of(tmp_path) != before
