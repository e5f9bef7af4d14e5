"""Shared test helpers: where the golden data lives, and how a missing fixture is reported."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_ENV = "HYPERSEG_FIXTURES"


def fixtures_root() -> Path:
    """`$HYPERSEG_FIXTURES`, else `../shared/fixtures` next to the checkout."""
    return Path(os.environ.get(FIXTURES_ENV, REPO_ROOT.parent / "shared" / "fixtures"))


def require_fixture(*parts: str) -> Path:
    """Path of a golden-data folder/file; skips with a reason when absent, fails under CI (where it must exist)."""
    path = fixtures_root().joinpath(*parts)
    if not path.exists():
        message = f"golden data not found at {path} (set ${FIXTURES_ENV} to the shared/fixtures folder)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, excluded by default (run with `-m slow`)")


@pytest.fixture(scope="session")
def converted_checkpoint(tmp_path_factory):
    """`converted_checkpoint(name)`: the original checkpoint of golden-data folder `name`, converted once a session."""
    from hyperseg.conversion.convert_hyperseg_to_hf import convert

    folders = {}

    def converted(name: str) -> Path:
        if name not in folders:
            folders[name] = tmp_path_factory.mktemp(f"converted_{name}")
            convert(require_fixture(name, "checkpoint"), folders[name])
        return folders[name]

    return converted
