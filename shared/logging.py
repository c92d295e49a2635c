"""structlog configured for JSON lines on stderr: one place, used by every process."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", **context: Any) -> None:
    """JSON logs to stderr with ISO timestamps; `context` (service, instance) is bound globally."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if context:
        structlog.contextvars.bind_contextvars(**context)
    # Libraries that log through stdlib logging (nats, uvicorn) go through the same level.
    logging.basicConfig(level=_LEVELS.get(level, logging.INFO) + 10, stream=sys.stderr)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
