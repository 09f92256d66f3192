"""dfnas: data-free neural architecture search.

Pure-Python parts (search spaces, data formats, ...) import without the compiled extension; the
fused ops in `dfnas.ops` load `dfnas._C` on first use (the first op call).
"""
from __future__ import annotations

__version__ = "0.1.0"


def build_info() -> dict:
    """What the compiled extension was built with and what it uses on this machine."""
    from dfnas.ops import _extension

    return _extension.build_info()
