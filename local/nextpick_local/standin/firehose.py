"""Where Firehose puts a delivery in S3: the moto patch (moto_patches.firehose_prefixes) and the demo's
event-log writer (demo.seed) both need Firehose's key layout."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

_FIREHOSE_EXPRESSION = re.compile(r"!\{timestamp:([^}]+)\}")
# Firehose's (Java DateTimeFormatter) pattern letters -> strftime.
_JAVA_TO_STRFTIME = (("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S"))


def firehose_object_key(stream_name: str, version_id: str, prefix: str, now: datetime) -> str:
    """The S3 key Firehose gives a delivery: the prefix with its `!{timestamp:...}` expressions
    evaluated (arrival time, UTC), then `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>`.

    Firehose appends the default `yyyy/MM/dd/HH/` only to prefixes without expressions."""

    def evaluate(match: re.Match[str]) -> str:
        pattern = match.group(1)
        for java, strftime in _JAVA_TO_STRFTIME:
            pattern = pattern.replace(java, strftime)
        return now.strftime(pattern)

    if _FIREHOSE_EXPRESSION.search(prefix):
        folder = _FIREHOSE_EXPRESSION.sub(evaluate, prefix)
    else:
        folder = f"{prefix}{'' if not prefix or prefix.endswith('/') else '/'}{now.strftime('%Y/%m/%d/%H')}/"
    return f"{folder}{stream_name}-{version_id}-{now.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}"
