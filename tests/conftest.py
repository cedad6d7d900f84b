from __future__ import annotations

import aioice.ice
import pytest
import torch

from telepresence.ice import restrict_host_addresses


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture()
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ICE on 127.0.0.1 (aioice skips loopback by default); restored after the test."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    restrict_host_addresses(["127.0.0.1"])
