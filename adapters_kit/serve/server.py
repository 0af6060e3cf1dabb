"""``adapters-kit serve``: load the runs, then answer HTTP on uvicorn until SIGINT / SIGTERM (which drain)."""

from __future__ import annotations

import logging

from adapters_kit.errors import UserError
from adapters_kit.serve.options import ServeSettings

log = logging.getLogger("adapters_kit.serve")
DRAIN_S = 30
"""How long a stopping server waits for requests in flight."""


def build_app(settings: ServeSettings):
    """Load every run folder of ``settings`` into one pool and return the app serving it."""
    from adapters_kit.runs.pool import Pool
    from adapters_kit.serve.app import create_app, read_api_key

    api_key = read_api_key(settings.api_key_env)
    pool = Pool(max_batch_size=settings.max_batch_size)
    for i, run_dir in enumerate(settings.run_dirs):
        pool.load(run_dir, settings.names[i] if i < len(settings.names) else None)
    return create_app(pool, settings, api_key)


def serve(settings: ServeSettings) -> int:
    """Run the server in the foreground; returns 0 after a clean shutdown."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("adapters-kit serve needs FastAPI and uvicorn: pip install 'adapters_kit[serve]'") from None
    app = build_app(settings)
    pool = app.state.server.pool
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable from other machines", settings.host)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info",
                            timeout_graceful_shutdown=DRAIN_S)
    server = uvicorn.Server(config)
    logging.getLogger("adapters_kit").setLevel(logging.INFO)
    log.info("%d adapter(s) on %d backbone(s): %s", len(pool.served), len(pool.backbones),
             ", ".join(pool.served) or "none yet")
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn hands the Ctrl-C it drained on back once it stopped: a normal stop
        pass
    return 0
