"""Security floors of the parsers we rely on (see ../shared/reference/bad-inputs.md)."""

from __future__ import annotations

import sys
from importlib.metadata import version

from packaging.version import Version


def test_dependency_floors() -> None:
    assert sys.version_info >= (3, 11)
    assert Version(version("pillow")) >= Version("12.2")  # decompression-bomb and parser fixes
    assert Version(version("rosettasciio")) >= Version("0.15")
    assert Version(version("defusedxml")) >= Version("0.7")


def test_no_torchvision_or_agpl_pdf() -> None:
    import importlib.util

    for name in ("torchvision", "fitz", "pymupdf"):
        assert importlib.util.find_spec(name) is None, f"{name} must not be installed"
