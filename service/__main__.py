"""`python -m service --config FILE [--host H] [--port P] [--weights W] [--data-dir D] [--device D]
[--precision P]` (also `ffp serve ...`).

settings -> build_service (predictor, event store, pipeline) -> create_app -> uvicorn. A bad config, missing or
corrupt weights, or an unusable data dir ends with one line on stderr and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_CONFIG = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="ffp serve", description="Run the ffp anomaly detection service.")
    ap.add_argument("--config", type=Path, help="YAML settings file (FFP_* environment variables override it)")
    ap.add_argument("--host", help="bind address (default from settings: 127.0.0.1)")
    ap.add_argument("--port", type=int, help="bind port (default from settings: 8000)")
    ap.add_argument("--weights", type=Path, help="weights file (default: the shipped weights)")
    ap.add_argument("--data-dir", type=Path, help="events database and images folder")
    ap.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                    help="model precision (auto: bf16 or fp16 on a GPU; on a CPU the faster of fp32 and bf16, "
                         "measured at start)")
    return ap.parse_args(argv)


def fail(message: str) -> int:
    first, *rest = [line.strip() for line in message.strip().splitlines() if line.strip()] or [""]
    print(f"ffp serve: error: {first}" + (" " + "; ".join(rest) if rest else ""), file=sys.stderr)
    return EXIT_CONFIG


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported here, settings first, so `--help` and a bad config answer before torch is even imported.
    from .settings import SettingsError, load_settings

    overrides: dict[str, Any] = {k: v for k, v in (("host", args.host), ("port", args.port),
                                                    ("weights", args.weights), ("data_dir", args.data_dir),
                                                    ("device", args.device), ("precision", args.precision))
                                if v is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except SettingsError as e:
        return fail(str(e))
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .api.security import RedactSecrets

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    from .api import create_app
    from .server import server_config
    from .wiring import ServiceError, build_service

    try:
        service = build_service(settings)
    except ServiceError as e:
        return fail(str(e))
    try:
        import uvicorn
        from uvicorn.config import STARTUP_FAILURE

        # server_config: the connection limits of settings.http; log_config=None, so uvicorn's loggers propagate
        # to the root logger configured above.
        server = uvicorn.Server(server_config(create_app(service), settings))
        server.run()
        if not server.started:  # the app's startup failed (already logged), as uvicorn.run reports it
            return STARTUP_FAILURE
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after its graceful shutdown: nothing left to do
        pass
    except ValueError as e:  # e.g. a configured camera the pipeline refuses
        return fail(str(e))
    finally:
        service.stop()  # already done by the app's shutdown, unless uvicorn never got that far
    return 0


if __name__ == "__main__":
    sys.exit(main())
