"""Fixtures for the synthesis tests: a tiny random BatchNorm teacher and the bundled default teacher."""
from __future__ import annotations

import pytest

from dfnas.teachers import Teacher

from synth_helpers import make_tiny_teacher


@pytest.fixture
def tiny_teacher() -> Teacher:
    return make_tiny_teacher()


@pytest.fixture(scope="session")
def default_teacher_spec() -> str:
    """The bundled teacher's spec (tests that take it run the real default teacher)."""
    return "default"
