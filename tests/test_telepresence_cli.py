"""The ``telepresence`` command line."""

from __future__ import annotations

import functools
import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from npga.bundle import DEMO_AVATAR_DIR, load_bundle
from telepresence.auth import verify_token
from telepresence.cli import main


def _telepresence(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telepresence.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_token_mints_a_verifiable_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--secret", "k", "--room", "r", "--role", "sender", "--ttl", "60"]) == 0
    verify_token("k", capsys.readouterr().out.strip(), "r", "sender")


SEND = ["send", "--room", "r", "--synthetic", "--server", "http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (SEND, "cannot reach"),
        (["send", "--room", "r"], "choose one source"),
        (["send", "--room", "r", "--synthetic", "--show"], "--show needs an OpenCV build"),
        (["serve", "--resolution", "15"], "resolution must be an even number"),
        (["bench", "--sessions", "0"], "expected a positive number"),
        (["bench", "--client-processes", "-1"], "expected 0 or more"),
        (["bench", "--during-job", "/no/clip.mp4"], "--during-job /no/clip.mp4: no such file"),
        (["token", "--secret", " ", "--room", "r", "--role", "sender"], "--secret is empty"),
        (
            ["token", "--secret", "k", "--room", "r", "--role", "sender", "--ttl", "inf"],
            "expected a positive number, got inf",
        ),
        (["serve", "--secret", ""], "--secret is empty"),
        # output paths are checked before connecting (the server here does not exist)
        ([*SEND, "--record", "/no/dir/me.mp4"], "/no/dir/me.mp4: its folder does not exist"),
        ([*SEND, "--stats-json", "/tmp"], "/tmp: is a folder; give a file name"),
    ],
)
def test_bad_usage_is_one_clear_line(args: list[str], message: str) -> None:
    result = _telepresence(*args)
    assert result.returncode != 0
    assert message in result.stderr.strip().splitlines()[-1]  # one line (after argparse's usage)
    assert "Traceback" not in result.stderr


def test_a_server_that_is_not_telepresence_is_one_clear_line(tmp_path: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as web:
        threading.Thread(target=web.serve_forever, daemon=True).start()
        try:
            server = f"http://127.0.0.1:{web.server_address[1]}"
            result = _telepresence("send", "--room", "r", "--synthetic", "--server", server)
        finally:
            web.shutdown()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "/api/avatars answered HTTP 404 without a JSON object: is this a telepresence server?"
        )
    )


def test_ctrl_c_is_one_line_not_a_traceback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        server = f"http://127.0.0.1:{silent.getsockname()[1]}"
        sender = subprocess.Popen(
            [sys.executable, "-m", "telepresence.cli", *SEND[:-1], server],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert sender.stderr is not None
        assert sender.stderr.readline().startswith(f"joining room 'r' at {server}")
        time.sleep(1.0)  # waiting for the server's answer
        sender.send_signal(signal.SIGINT)
        _, stderr = sender.communicate(timeout=30)
    assert sender.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "telepresence: interrupted"
    assert "Traceback" not in stderr


def test_bench_reports_latency_fps_and_bandwidth(tmp_path: Path) -> None:
    result = _telepresence(
        "bench", "--sessions", "1", "--viewers", "3", "--seconds", "3", "--resolution", "64",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    session = report["per_session"][0]
    demo_dim = load_bundle(DEMO_AVATAR_DIR).config.expression_dim
    assert session["uplink_bytes_per_frame"] == 52 + 2 * demo_dim
    assert session["fps_received"] > 15
    assert session.get("e2e_latency_ms_p95", 0) > 0
    assert session["downlink_kbps"] > 10
    assert report["server_render_ms_mean"] > 0
    # three receivers of the avatar, one encode per frame (a few keyframes on top)
    assert report["viewers_per_session"] == 3 and session["viewers_min_fps_received"] > 10
    assert 1.0 <= report["server_encodes_per_frame"] < 1.3
    assert report["render_level_at_end"]["detail"] == 0.35
    # where the time went, stage by stage, on one clock: the stages add up to the latency
    stages = session["latency_breakdown"]
    assert set(stages) == {"uplink", "queue", "render", "encode_wait", "encode", "network_decode"}
    assert all(s["frames"] > 10 and 0 <= s["ms_p50"] <= s["ms_p95"] for s in stages.values())
    total = sum(s["ms_p50"] for s in stages.values())
    assert 0.5 * session["e2e_latency_ms_p50"] < total < 1.5 * session["e2e_latency_ms_p50"]


def test_bench_through_a_local_janus() -> None:
    result = _telepresence(
        "bench", "--sessions", "1", "--viewers", "4", "--seconds", "3", "--resolution", "64",
        "--codec", "vp8", "--janus", "auto", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    session = report["per_session"][0]
    assert report["sfu"] == "janus" and report["viewers_per_session"] == 4
    assert len(session["viewers_fps_received"]) == 3 and session["viewers_min_fps_received"] > 10
    assert session["viewers_worst_e2e_latency_ms_p95"] > 0
    # the sender's own seat and Janus share one VP8 encode per frame
    assert 1.0 <= report["server_encodes_per_frame"] < 1.3
    assert report["server_process_cpu_ms_per_frame"] > 0


def test_bench_runs_its_clients_in_worker_processes() -> None:
    result = _telepresence(
        "bench", "--sessions", "2", "--client-processes", "2", "--seconds", "3",
        "--resolution", "64", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["client_processes"] == 2
    assert len(report["per_session"]) == 2
    for session in report["per_session"]:
        assert session["fps_received"] > 15
        assert session.get("e2e_latency_ms_p95", 0) > 0
        assert session["latency_breakdown"]["render"]["frames"] > 10  # joined across processes


def test_serve_refuses_a_bad_avatar_bundle_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "avatar.json").write_text("{not json")
    result = _telepresence("serve", "--avatar", str(broken), "--port", "0")
    assert result.returncode == 2
    assert "avatar.json: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
