"""The server's settings and their command-line flags (no web libraries imported here)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeSettings:
    """How ``adapters-kit serve`` runs; every field is a flag of the same name."""

    run_dirs: list[str] = field(default_factory=list)
    """Run folders to serve from the start."""
    names: list[str] = field(default_factory=list)
    """Adapter names for ``run_dirs``, in order (default: each folder's name)."""
    runs_dir: str | None = None
    """The only folder ``POST /v1/adapters`` may load runs from (hot-loading is off without it)."""
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32
    """Inputs answered by one batch, across requests and adapters."""
    max_wait_ms: float = 10.0
    """How long the first request of a batch waits for others to join it."""
    max_queue: int = 256
    """Requests waiting for a batch beyond which new ones get 503 with Retry-After."""
    max_inputs: int = 64
    """Inputs one request may carry."""
    max_request_mb: float = 16.0
    """Largest request body accepted (413 beyond)."""
    timeout_s: float = 30.0
    """A request not answered in this time gets 504."""
    api_key_env: str | None = None
    """Environment variable holding the key that POST / DELETE /v1/adapters require."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` command's flags."""
    d = ServeSettings()
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run folders to serve")
    parser.add_argument("--name", dest="names", action="append", default=[],
                        help="adapter name of the RUN_DIR in the same position (repeat; default: the folder's name)")
    parser.add_argument("--runs-dir", help="folder POST /v1/adapters may load run folders from (hot-loading is off "
                                           "without it)")
    parser.add_argument("--host", default=d.host, help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=d.port)
    parser.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                        help="inputs per model batch, across requests and adapters")
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                        help="how long a batch waits for more requests to join")
    parser.add_argument("--max-queue", type=int, default=d.max_queue,
                        help="waiting requests beyond which new ones get 503 with Retry-After")
    parser.add_argument("--max-inputs", type=int, default=d.max_inputs, help="inputs one request may carry")
    parser.add_argument("--max-request-mb", type=float, default=d.max_request_mb, help="largest request body")
    parser.add_argument("--timeout-s", type=float, default=d.timeout_s, help="per-request time limit (504 beyond)")
    parser.add_argument("--api-key-env", metavar="VAR",
                        help="environment variable holding the key POST / DELETE /v1/adapters require")


def settings_from(args: argparse.Namespace) -> ServeSettings:
    """The parsed flags as settings, checked: one line for anything that cannot work."""
    from adapters_kit.errors import UserError

    values = {f: getattr(args, f) for f in ServeSettings.__dataclass_fields__}
    s = ServeSettings(**values)
    if not s.run_dirs and not s.runs_dir:
        raise UserError("serve needs run folders to serve, or --runs-dir to hot-load them from")
    if len(s.names) > len(s.run_dirs):
        raise UserError(f"{len(s.names)} --name given for {len(s.run_dirs)} run folders; give at most one per folder")
    for flag, value in (("--max-batch-size", s.max_batch_size), ("--max-queue", s.max_queue),
                        ("--max-inputs", s.max_inputs)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if not 0 <= s.port <= 65535:
        raise UserError(f"--port must be 0..65535 (0: any free port), got {s.port}")
    for flag, value in (("--max-wait-ms", s.max_wait_ms), ("--max-request-mb", s.max_request_mb),
                        ("--timeout-s", s.timeout_s)):
        if not value >= 0:
            raise UserError(f"{flag} must not be negative, got {value}")
    return s
