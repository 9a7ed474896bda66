"""Pengaduan bridge: citizens' complaints from WhatsApp into the office's Matrix rooms.

    python main.py --config config.toml          run the bridge (until SIGINT/SIGTERM)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from bridge.app import Bridge
from bridge.config import ConfigError, Settings, load
from bridge.matrix import MatrixStartupError
from bridge.privacy import MaskingFilter

log = logging.getLogger("bridge")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()}, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("nio", "aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bridge = Bridge(settings)
    await bridge.start()
    try:
        await stop.wait()
        log.info("bridge: stopping")
    finally:
        await bridge.stop()
    log.info("bridge: stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.toml", help="path to config.toml")
    parser.add_argument("command", nargs="?", default="run", choices=["run"],
                        help="what to do (default: run the bridge)")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        settings = load(args.config)
        setup_logging(settings.log_format)
        if args.command == "run":
            asyncio.run(run(settings))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except MatrixStartupError as e:
        print(f"cannot start: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
