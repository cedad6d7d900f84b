"""Server configuration (parsed only in cli.py, passed down explicitly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from telepresence.jobs import JobLimits, JobRecipe

CPU_DETAIL = 0.35  # the default level of detail on a CPU (npga/detail.py)


@dataclass(frozen=True)
class Limits:
    max_rooms: int = 32
    max_participants_per_room: int = 8
    max_sessions: int = 32  # per server process (one process per device)
    max_message_bytes: int = 1024  # data-channel messages
    max_messages_per_second: float = 120.0  # expr, per participant, token bucket
    max_ctrl_per_second: float = 20.0  # ctrl requests, per participant, token bucket
    max_sdp_bytes: int = 64 * 1024  # an offer's SDP (a browser's with 5 sections: ~10 KB)
    video_seats: int = 4  # avatar video tracks a client may receive at most
    idle_connection_seconds: float = 15.0  # an HTTP connection without a complete request
    max_connections: int = 512  # HTTP connections open at once (telepresence/connections.py)
    request_body_seconds: float = 10.0  # an offer's body must arrive within this


@dataclass(frozen=True)
class SfuConfig:
    """``--janus``: where the receiver publishes its avatar streams (telepresence/janus.py)."""

    url: str  # the Janus HTTP API the receiver talks to, e.g. http://127.0.0.1:8088/janus
    secret: str  # Janus's token_auth_secret and the VideoRoom admin_key
    public_url: str | None = None  # what viewers are told (default: url)
    token_ttl_s: float = 3600.0  # viewers' Janus tokens
    max_publishers: int = 64  # per room, over all receivers

    @property
    def viewer_url(self) -> str:
        return self.public_url or self.url

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"--janus must be Janus's HTTP API URL (http://...), got {self.url!r}")
        if not self.secret.strip():
            raise ValueError("--janus needs --janus-secret (Janus's token_auth_secret)")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    avatar_dirs: tuple[Path, ...] = ()  # empty: the built-in demo avatar
    device: str = "cpu"
    resolution: int = 256  # rendered frames are resolution x resolution
    fps: float = 30.0
    detail: float | None = None  # fraction of each avatar's Gaussians rendered; None: auto
    secret: str | None = None  # with a secret, offers need a token
    insecure_open: bool = False  # without a secret, accept non-loopback clients anyway
    ice_servers: tuple[str, ...] = ()  # stun: URLs (for the server and handed to clients)
    turn_urls: tuple[str, ...] = ()  # turn: URLs of a coturn with use-auth-secret
    turn_secret: str | None = None  # its static-auth-secret: credentials are minted per peer
    turn_ttl_s: float = 3600.0
    stamp_frames: bool = False  # debug: draw the rendered seq as a barcode (latency benchmark)
    limits: Limits = field(default_factory=Limits)
    avatar_store: Path | None = None  # --avatar-dir: uploads, creation jobs, created avatars
    job_limits: JobLimits = field(default_factory=JobLimits)
    job_recipe: JobRecipe = field(default_factory=JobRecipe)
    sfu: SfuConfig | None = None  # --janus: viewers get the avatars from Janus

    @property
    def render_detail(self) -> float:
        """The level of detail served: as given, else all Gaussians on a GPU and the 35 % that
        show most on a CPU (~2x faster there, 43 dB from the full image: docs/benchmarks.md)."""
        if self.detail is not None:
            return self.detail
        return 1.0 if self.device.startswith("cuda") else CPU_DETAIL

    def __post_init__(self) -> None:
        if self.resolution < 16 or self.resolution % 2:
            raise ValueError(f"resolution must be an even number >= 16, got {self.resolution}")
        if self.detail is not None and not 0 < self.detail <= 1:
            raise ValueError(f"detail must be within (0, 1], got {self.detail:g}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps must be within 1..120, got {self.fps}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {self.port}")
        if self.secret is not None and not self.secret.strip():
            raise ValueError("--secret is empty: give a real secret, or none for loopback only")
        if self.turn_urls and self.turn_secret is None:
            raise ValueError("--turn-url needs --turn-secret (coturn's static-auth-secret)")
