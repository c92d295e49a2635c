"""Parameters routes declare the same way: ids in paths, and the sequence a read waits for.

Every id in a path becomes a NATS subject token (``hive.evt.task.<id>.*``), so every one is held to
the one id rule (``shared/ids.py``) before a handler sees it: a route declares ``task_id: PathId``
and a malformed id is a 400 naming it (a well-formed id that does not exist is the handler's 404).
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter, PathParameter

from shared.ids import ID_PATTERN, ID_RULE

PathId = Annotated[
    str,
    PathParameter(pattern=ID_PATTERN, min_length=1, max_length=64, description=f"an id: {ID_RULE}"),
]
AfterSeq = Annotated[
    int | None,
    Parameter(
        ge=0,
        description="answer once the gateway has applied the log up to this sequence (read your "
        "writes: the seq an earlier answer returned); 400 when the log does not reach it",
    ),
]
IdFilter = Annotated[
    str | None, Parameter(pattern=ID_PATTERN, max_length=64, description=f"only this one (an id: {ID_RULE})")
]
