"""In-tree PEP 517 backend: build against the torch already installed in the target environment.

pip's build isolation hides the target environment's site-packages, so a `setup.py` that imports
torch would either fail or (with torch in `requires`) download a second, multi-GB torch and build
against the wrong ABI. We append the target environment's site-packages to `sys.path` (appended,
so the isolated env's setuptools still wins).
Without torch the build stops at once with the command to run.
"""
import os
import sys
import sysconfig

_paths = sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix})
for _key in ("purelib", "platlib"):
    if os.path.isdir(_paths[_key]) and _paths[_key] not in sys.path:
        sys.path.append(_paths[_key])

from setuptools import build_meta as _setuptools_backend
from setuptools.build_meta import *  # noqa: F401,F403  (re-export the standard hooks)


TORCH_MISSING = (
    "dfnas builds its C++ extension against the PyTorch installed in this environment, and none "
    "is installed. Install it first, then install dfnas again:\n"
    "    pip install torch==2.13.0        (CPU; or the CUDA build of torch for a GPU machine)\n"
    "    pip install .\n"
)


def _require_torch() -> None:
    # Stop within seconds instead of letting pip resolve a multi-GB torch into the build env.
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SystemExit(TORCH_MISSING) from None


def get_requires_for_build_wheel(config_settings=None):
    _require_torch()
    return _setuptools_backend.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings=None):
    _require_torch()
    return _setuptools_backend.get_requires_for_build_editable(config_settings)
