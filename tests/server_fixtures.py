"""A real server on loopback with a small avatar, for the telepresence tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from npga.bundle import AvatarBundle
from npga.model import AvatarConfig, default_camera, synthetic_avatar
from telepresence.app import create_app, server_runner
from telepresence.avatars import AvatarRegistry
from telepresence.config import ServerConfig
from telepresence.jobs import JobRecipe

SMALL_CONFIG = AvatarConfig(expression_dim=16, feature_dim=8, hidden_dim=16)
TEST_SERVER_CONFIG = ServerConfig(resolution=64, fps=30.0)
# An avatar-creation job of a minute or two on 2 cores: 64 px, 8-dim codes, 60 steps.
TINY_JOB_RECIPE = JobRecipe(
    quality="fast",
    extra_args=("--resolution", "64", "--expression-dim", "8", "--iters", "60", "--frames", "30"),
)


def small_registry(resolution: int = 64) -> AvatarRegistry:
    bundles = {
        name: AvatarBundle(
            synthetic_avatar(3000, SMALL_CONFIG, seed=seed).eval(), default_camera(64)
        )
        for name, seed in (("anna", 0), ("ben", 1))
    }
    return AvatarRegistry.from_bundles(bundles, resolution)


class _Server(TestServer):
    """aiohttp's test server with the runner ``telepresence serve`` uses."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return server_runner(self.app)


@asynccontextmanager
async def running_server(**overrides: object) -> AsyncIterator[TestServer]:
    config = replace(TEST_SERVER_CONFIG, **overrides)  # type: ignore[arg-type]
    app = create_app(config, small_registry(config.resolution))
    server = _Server(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")
