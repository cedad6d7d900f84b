from __future__ import annotations

import shutil
from collections.abc import Iterator

import aioice.ice
import pytest
import torch

from telepresence.ice import local_addresses, restrict_host_addresses
from telepresence.janus_local import LocalJanus, local_janus

JANUS_SECRET = "janus-test-secret"


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


@pytest.fixture(scope="session")
def local_janus_server() -> Iterator[LocalJanus]:
    """Debian's janus, started once for the tests that use it (secret JANUS_SECRET)."""
    if shutil.which("janus") is None:
        pytest.fail("Debian's janus is not installed (.ci/run and make system-deps install it)")
    with local_janus(JANUS_SECRET) as server:
        yield server


@pytest.fixture()
def janus(local_janus_server: LocalJanus, monkeypatch: pytest.MonkeyPatch) -> LocalJanus:
    """The local Janus; peers offer loopback and the main address (where Janus's media is)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    restrict_host_addresses(local_addresses())
    return local_janus_server
