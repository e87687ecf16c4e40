"""Engine tests: CPU, offline, small. Shared settings only; fixtures live beside their tests."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("PROJ_DATA", None)
os.environ.pop("PROJ_LIB", None)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Two cores are shared by everything on CI: keep torch to one intra-op thread."""
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _reset_cancel():
    from engine.progress import reset_cancel

    reset_cancel()
    yield
    reset_cancel()
