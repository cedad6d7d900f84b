"""The built web client's files over HTTP (no browser): their types, nothing outside dist/."""

from __future__ import annotations

import pytest
from aiohttp import ClientSession

from browser_fixtures import requires
from server_fixtures import running_server
from telepresence.app import WEB_CLIENT

pytestmark = requires(
    not (WEB_CLIENT / "mediapipe").is_dir(), "web client not built (make install)"
)


@pytest.mark.asyncio
async def test_web_client_files_are_served_with_their_types() -> None:
    async with running_server() as server, ClientSession() as session:

        async def get(path: str) -> tuple[int, str, bytes]:
            async with session.get(server.make_url(path)) as response:
                return response.status, response.headers["Content-Type"], await response.read()

        status, kind, body = await get("/")
        assert status == 200 and kind.startswith("text/html") and b"face_mesh.js" in body
        expected = {
            "/static/app.js": "text/javascript",
            "/static/tracking.js": "text/javascript",
            "/static/style.css": "text/css",
            "/static/mediapipe/face_mesh.js": "text/javascript",
            "/static/mediapipe/face_mesh_solution_simd_wasm_bin.wasm": "application/wasm",
            "/static/mediapipe/face_mesh_solution_packed_assets.data": ("application/octet-stream"),
            "/static/mediapipe/face_mesh.binarypb": "application/octet-stream",
        }
        for path, want in expected.items():
            status, kind, body = await get(path)
            assert status == 200 and kind.startswith(want) and body, path
        status, kind, _ = await get("/static/missing.js")
        assert status == 404 and kind.startswith("application/json")
        for path in ("/static/../app.py", "/static/%2e%2e/%2e%2e/README.md", "/static/x.py"):
            status, _, body = await get(path)
            assert status == 404 and b"import" not in body and b"NPGA" not in body, path
