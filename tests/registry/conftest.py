import shutil
from pathlib import Path

import pytest

from tests.fixtures.slices import write_slice


@pytest.fixture(scope="session")
def pristine_slice(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("pristine") / "mmlu-slice")


@pytest.fixture
def slice_dir(pristine_slice, tmp_path):
    """A private copy of a 120-question MMLU-Pro slice that a test may corrupt."""
    return Path(shutil.copytree(pristine_slice, tmp_path / "mmlu-slice"))
