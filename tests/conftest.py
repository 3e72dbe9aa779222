"""Shared pytest fixtures. The data fixtures live in conftest_data.py (tiny images, LFW look-alike, HTTP server)."""

import pytest
import torch
from conftest_data import face_folder, http_server, lfw_dir, make_image  # noqa: F401


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny tensors: a second thread only costs synchronisation (about x5
    on a busy 2-core machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
