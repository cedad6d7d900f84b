"""docker-compose.yml and the Dockerfile: services, GPU, health checks, and that they agree."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from telepresence.cli import build_parser
from telepresence.janus_api import signed_token

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()

# compose environment variable -> the `telepresence serve` option it sets
ENV_TO_OPTION = {
    "TELEPRESENCE_HOST": "host",
    "TELEPRESENCE_PORT": "port",
    "TELEPRESENCE_DEVICE": "device",
    "TELEPRESENCE_RESOLUTION": "resolution",
    "TELEPRESENCE_SECRET": "secret",
    "TELEPRESENCE_AVATARS": "avatar",
    "TELEPRESENCE_TURN_URLS": "turn_url",
    "TELEPRESENCE_TURN_SECRET": "turn_secret",
    "TELEPRESENCE_TURN_TTL": "turn_ttl",
    "TELEPRESENCE_AVATAR_DIR": "avatar_dir",
    "TELEPRESENCE_JOB_THREADS": "job_threads",
    "TELEPRESENCE_JANUS": "janus",
    "TELEPRESENCE_JANUS_SECRET": "janus_secret",
    "TELEPRESENCE_JANUS_PUBLIC_URL": "janus_public_url",
}


def _receiver() -> dict:
    return COMPOSE["services"]["receiver"]


def test_services_gpu_reservation_and_restart_policies() -> None:
    assert set(COMPOSE["services"]) == {"receiver", "turn", "sfu"}
    devices = _receiver()["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    for service in COMPOSE["services"].values():
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"]
        assert service["network_mode"] == "host"  # WebRTC/TURN ports reachable as they are


def test_compose_and_dockerfile_agree_on_port_health_and_entrypoint() -> None:
    port = _receiver()["environment"]["TELEPRESENCE_PORT"]
    assert re.search(rf"^EXPOSE {port}$", DOCKERFILE, re.M)
    assert "ENV PATH=/opt/venv/bin:$PATH" in DOCKERFILE
    assert re.search(rf"TELEPRESENCE_PORT={port}\b", DOCKERFILE)
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(_receiver()["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in DOCKERFILE.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["telepresence", "serve"]' in DOCKERFILE
    assert re.search(r"^USER telepresence$", DOCKERFILE, re.M)  # not root
    assert "--no-binary gsplat" in DOCKERFILE  # CUDA kernels built into the image
    assert DOCKERFILE.count("FROM nvidia/cuda:") == 2


def test_turn_service_and_receiver_share_secret_and_port() -> None:
    command = COMPOSE["services"]["turn"]["command"]
    assert "--use-auth-secret" in command
    assert "--static-auth-secret=${TURN_SECRET:?set TURN_SECRET}" in command
    assert (
        _receiver()["environment"]["TELEPRESENCE_TURN_SECRET"] == "${TURN_SECRET:?set TURN_SECRET}"
    )
    listening = next(c for c in command if c.startswith("--listening-port="))
    assert f":{listening.split('=')[1]}?" in _receiver()["environment"]["TELEPRESENCE_TURN_URLS"]


def test_every_compose_variable_is_read_by_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = _receiver()["environment"]
    assert set(environment) <= set(ENV_TO_OPTION), set(environment) - set(ENV_TO_OPTION)
    samples = {
        "TELEPRESENCE_HOST": "0.0.0.0",
        "TELEPRESENCE_PORT": "9123",
        "TELEPRESENCE_DEVICE": "cuda",
        "TELEPRESENCE_RESOLUTION": "384",
        "TELEPRESENCE_SECRET": "abc",
        "TELEPRESENCE_AVATARS": "/avatars/a:/avatars/b",
        "TELEPRESENCE_TURN_URLS": "turn:h:3478?transport=udp",
        "TELEPRESENCE_TURN_SECRET": "t",
        "TELEPRESENCE_TURN_TTL": "60",
        "TELEPRESENCE_AVATAR_DIR": "/created",
        "TELEPRESENCE_JOB_THREADS": "3",
        "TELEPRESENCE_JANUS": "http://127.0.0.1:8088/janus",
        "TELEPRESENCE_JANUS_SECRET": "j",
        "TELEPRESENCE_JANUS_PUBLIC_URL": "https://sfu.example/janus",
    }
    for name, value in samples.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["serve"])
    assert args.host == "0.0.0.0" and args.port == 9123 and args.resolution == 384
    assert [str(p) for p in args.avatar] == ["/avatars/a", "/avatars/b"]
    assert args.turn_url == ["turn:h:3478?transport=udp"] and args.turn_secret == "t"
    assert args.secret == "abc" and args.device == "cuda" and args.turn_ttl == 60
    assert str(args.avatar_dir) == "/created" and args.job_threads == 3
    assert args.janus == "http://127.0.0.1:8088/janus" and args.janus_secret == "j"
    assert args.janus_public_url == "https://sfu.example/janus"


def test_the_deployed_janus_configuration_runs_and_wants_signed_tokens(tmp_path: Path) -> None:
    """deploy/janus/entrypoint.sh with its configuration files, on Debian's janus."""
    janus = shutil.which("janus")
    if janus is None:
        pytest.fail("Debian's janus is not installed (.ci/run and make system-deps install it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "PATH": "/usr/bin:/bin",
        "JANUS_SECRET": "deploy-secret",
        "PUBLIC_HOST": "203.0.113.7",
        "JANUS_HTTP_PORT": str(port),
        "JANUS_RTP_PORTS": "30000-30099",
        "JANUS_CONFIG_TEMPLATES": str(ROOT / "deploy" / "janus"),
        "TMPDIR": str(tmp_path),
    }
    log = (tmp_path / "janus.log").open("wb")
    process = subprocess.Popen(
        [str(ROOT / "deploy" / "janus" / "entrypoint.sh")], env=env, stdout=log, stderr=log
    )
    try:
        url = f"http://127.0.0.1:{port}/janus/info"
        deadline = time.monotonic() + 15
        while True:
            try:
                token = urllib.parse.quote(signed_token("deploy-secret", 60))
                with urllib.request.urlopen(f"{url}?token={token}", timeout=1) as response:
                    info = json.loads(response.read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, (tmp_path / "janus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the deployed Janus did not answer"
                time.sleep(0.2)
        assert "janus.plugin.videoroom" in info["plugins"]
        assert set(info["plugins"]) == {"janus.plugin.videoroom"}  # nothing else loaded
        assert info["transports"].keys() == {"janus.transport.http"}
        for token in ("", signed_token("not-the-secret", 60)):
            request = urllib.request.Request(
                url.removesuffix("/info"), data=json.dumps(
                    {"janus": "create", "transaction": "t", "token": token}
                ).encode()
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=2) as response:
                assert json.loads(response.read())["error"]["code"] == 403
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_the_janus_service_and_the_receivers_share_the_secret() -> None:
    sfu = COMPOSE["services"]["sfu"]
    assert sfu["build"] == "deploy/janus"
    assert sfu["environment"]["JANUS_SECRET"] == "${JANUS_SECRET:?set JANUS_SECRET}"
    environment = _receiver()["environment"]
    assert environment["TELEPRESENCE_JANUS_SECRET"] == "${JANUS_SECRET:?set JANUS_SECRET}"
    assert environment["TELEPRESENCE_JANUS"] == "http://127.0.0.1:8088/janus"
