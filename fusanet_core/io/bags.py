"""Opening ROS bags (ROS 1 `.bag`, ROS 2 sqlite3 or MCAP) with `rosbags`, and what all readers share.

One place for: opening with one-line errors, listing topics, and the "missing topic" error that
lists what the bag has. Used by the training datasets (`fusanet_core.datasets.bag`), the bag
player (`fusanet play`) and the bag evaluation (`fusanet bag-eval`). No ROS needed: `rosbags`
reads and deserializes the messages itself.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

from ..errors import error_reason


@functools.lru_cache(maxsize=1)
def _default_typestore() -> Any:
    from rosbags.typesys import get_typestore, Stores

    return get_typestore(Stores.ROS2_HUMBLE)


def open_bag(paths: str | Path | Sequence[str | Path]) -> Any:
    """Open a rosbags `AnyReader` over one or more bags (several are merged by time).

    ROS 1 bags and ROS 2 bags from Iron on carry their message definitions; ROS 2 bags recorded
    by Humble and earlier do not, and are read with the Humble message definitions.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a bag cannot be opened (truncated, corrupt or not a bag), in one line.
    """
    from rosbags.highlevel import AnyReader

    bag_paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    for path in bag_paths:
        if not path.exists():
            raise FileNotFoundError(f"bag not found: {path}")
    try:
        reader = AnyReader(bag_paths, default_typestore=_default_typestore())
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises many types (and UnicodeDecodeError) for damaged files
        names = ", ".join(map(str, bag_paths))
        reason = error_reason(err, limit=200)
        raise ValueError(f"cannot read bag {names}: it is truncated, corrupt or not a bag ({reason})") from None
    return reader


def bag_topics(reader: Any) -> dict[str, tuple[str, int]]:
    """Map topic -> (message type, message count) of an opened reader."""
    topics: dict[str, tuple[str, int]] = {}
    for conn in reader.connections:
        old = topics.get(conn.topic, (conn.msgtype, 0))
        topics[conn.topic] = (conn.msgtype, old[1] + conn.msgcount)
    return topics


def topic_listing(topics: dict[str, tuple[str, int]]) -> str:
    """Format the bag's topics for error messages: '/a (pkg/msg/A, 10); /b (pkg/msg/B, 3)'."""
    return "; ".join(f"{t} ({m}, {n})" for t, (m, n) in sorted(topics.items())) or "no topics"


def require_topics(topics: dict[str, tuple[str, int]], wanted: str | Sequence[str], types: Sequence[str] = (),
                   what: str = "", bag: str | Path | None = None) -> None:
    """Check that the bag has each `wanted` topic (with one of `types`, when given).

    Args:
        topics: `bag_topics(reader)`.
        wanted: topic or topics.
        types: accepted message types; empty = any.
        what: the role of the topic in the message ("depth" -> "depth topic '/x' ...").
        bag: bag path named in the message.

    Raises:
        ValueError: one line naming the missing (or mistyped) topics and listing the bag's
            topics with their types and message counts.
    """
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    where = f"the bag {bag}" if bag else "the bag"
    subject = f"{what} topic" if what else "topic"
    missing = [t for t in wanted if t not in topics]
    if missing:
        names = ", ".join(repr(t) for t in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise ValueError(f"{subject}{'s' if len(missing) > 1 else ''} {names} {verb} not in {where}; "
                         f"it has: {topic_listing(topics)}")
    for topic in wanted:
        if types and topics[topic][0] not in types:
            raise ValueError(f"{subject} {topic!r} has type {topics[topic][0]}, expected {' or '.join(types)}; "
                             f"{where} has: {topic_listing(topics)}")


def closest_topic(topic: str, candidates: Sequence[str]) -> str | None:
    """Return the candidate sharing the longest leading path with `topic`.

    That is the CameraInfo topic of an image topic, say; None when none shares any part or two
    share the most.
    """
    parts = topic.strip("/").split("/")

    def shared(other: str) -> int:
        n = 0
        for a, b in zip(parts, other.strip("/").split("/")):
            if a != b:
                break
            n += 1
        return n

    scored = sorted(((shared(c), c) for c in candidates), reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return scored[0][1]
