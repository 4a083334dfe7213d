"""Unit-test fixtures."""

from __future__ import annotations

import pytest

from tests.unit.numpy_model import NumpyModel


@pytest.fixture
def items() -> list[str]:
    return [f"item-{i}" for i in range(1, 21)]


@pytest.fixture
def model(items: list[str]) -> NumpyModel:
    return NumpyModel(items)
