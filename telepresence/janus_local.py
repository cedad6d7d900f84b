"""A local Janus for benchmarks and tests: Debian's ``janus`` with a generated configuration.

Only what the receivers use is loaded: the VideoRoom plugin and the plain HTTP API, on a free
loopback port. Janus (libnice) never offers a loopback ICE candidate, so its media uses the
machine's own address: local peers must offer that address too
(``restrict_host_addresses(local_addresses())``, telepresence/ice.py). ``token_auth`` is on and
the VideoRoom's ``admin_key`` is the same secret, as in the deployment configuration
(deploy/janus/): nobody without it creates rooms or sessions.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from telepresence.ice import machine_address
from telepresence.janus_api import signed_token

START_TIMEOUT_S = 15.0
PLUGINS = Path("/usr/lib/x86_64-linux-gnu/janus")  # Debian's layout
UNUSED_PLUGINS = "audiobridge duktape echotest lua nosip recordplay sip streaming textroom "
UNUSED_PLUGINS += "videocall voicemail"
UNUSED_TRANSPORTS = "websockets mqtt nanomsg pfunix rabbitmq"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def janus_config(
    folder: Path, secret: str, http_port: int, rtp_ports: tuple[int, int], address: str
) -> Path:
    """Write a Janus configuration into ``folder``; the path of its janus.jcfg. Its ICE
    candidates are on ``address`` only."""
    plugins = ",".join(f"libjanus_{name}.so" for name in UNUSED_PLUGINS.split())
    transports = ",".join(f"libjanus_{name}.so" for name in UNUSED_TRANSPORTS.split())
    (folder / "janus.jcfg").write_text(
        f"""general: {{
\tconfigs_folder = "{folder}"
\tplugins_folder = "{PLUGINS}/plugins"
\ttransports_folder = "{PLUGINS}/transports"
\tevents_folder = "{PLUGINS}/events"
\tloggers_folder = "{PLUGINS}/loggers"
\tdebug_level = 3
\ttoken_auth = true
\ttoken_auth_secret = "{secret}"
\tsession_timeout = 60
\tserver_name = "telepresence-local"
}}
media: {{
\trtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
\tice_enforce_list = "lo"
}}
plugins: {{
\tdisable = "{plugins}"
}}
transports: {{
\tdisable = "{transports}"
}}
events: {{
\tbroadcast = false
}}
loggers: {{
\tdisable = "libjanus_jsonlog.so"
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
\tjson = "plain"
\tbase_path = "/janus"
\thttp = true
\tport = {http_port}
\tip = "127.0.0.1"
\thttps = false
}}
admin: {{
\tadmin_http = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text(
        f"""general: {{
\tadmin_key = "{secret}"
\tlock_rtp_forward = true
}}
"""
    )
    return folder / "janus.jcfg"


class LocalJanus:
    """A running local Janus: its API ``url``; :meth:`restart` stops and starts it again."""

    def __init__(self, folder: Path, secret: str) -> None:
        binary = shutil.which("janus")
        if binary is None:
            raise RuntimeError("Janus is not installed (Debian: apt-get install janus)")
        self.binary, self.folder, self.secret = binary, folder, secret
        port = _free_port()
        low = 20000 + (port % 400) * 100  # a block of RTP ports of its own
        address = machine_address()
        if address is None:
            raise RuntimeError("a local Janus needs a network interface besides loopback")
        self.address = address  # where its media is
        self.config = janus_config(folder, secret, port, (low, low + 99), self.address)
        self.url = f"http://127.0.0.1:{port}/janus"
        self.log = folder / "janus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-C", str(self.config), "-F", str(self.folder), "-o"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"janus exited at start (see {self.log})")
            try:
                token = urllib.parse.quote(signed_token(self.secret, 60))
                with urllib.request.urlopen(f"{self.url}/info?token={token}", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"janus did not answer within {START_TIMEOUT_S:g} s (see {self.log})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cpu_seconds(self) -> float:
        """CPU time (user + system, s) the running Janus has used."""
        if self.process is None:
            return 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def local_janus(secret: str) -> Iterator[LocalJanus]:
    """Start a local Janus for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="janus-") as folder:
        janus = LocalJanus(Path(folder), secret)
        janus.start()
        try:
            yield janus
        finally:
            janus.stop()
