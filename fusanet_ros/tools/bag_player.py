"""`fusanet play BAG`: publish a recorded bag, a stand-in for `ros2 bag play` on pip installs.

Reads ROS 2 bags (sqlite3 or MCAP, compressed or not) and ROS 1 bags with `rosbags` and publishes
every message with its recorded header, on the recorded schedule scaled by `--rate`, once or in a
loop. ROS 2 payloads are already CDR and are published as they are (rclpy accepts serialized
bytes), so VGA images cost no decode; ROS 1 messages are deserialized and copied field by field
into the rclpy types (ROS 1 `seq` dropped, `K` -> `k` and so on).

With `--clock`, rosgraph_msgs/Clock is published on /clock with the bag time of each message
just before it (as `ros2 bag play --clock` does), so nodes with `use_sim_time` run on bag time;
each `--loop` pass starts the clock again at the bag's first stamp (a jump back in time).

A bag whose storage fails while it is being read (a record or chunk whose declared size lies, a
broken chunk) ends the run with one line naming the bag and the messages published so far.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

# open_bag and bag_topics are also this module's API (imported from here by its callers).
from fusanet_core.errors import error_reason
from fusanet_core.io.bags import bag_topics, open_bag, require_topics  # noqa: F401

log = logging.getLogger(__name__)


def describe_topics(reader: Any) -> str:
    return "\n".join(f"  {topic}  {msgtype}  ({count} messages)"
                     for topic, (msgtype, count) in sorted(bag_topics(reader).items()))


def message_class(msgtype: str) -> type | None:
    """Return the rclpy class of 'pkg/msg/Name' (ROS 1 'pkg/Name' too), or None when not installed."""
    parts = msgtype.split("/")
    package, name = parts[0], parts[-1]
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def select_connections(reader: Any, topics: Sequence[str] | None) -> tuple[list[Any], list[str]]:
    """Return the connections to publish and the topics skipped because their type is not installed.

    Raises:
        ValueError: a requested topic is not in the bag (the message lists the bag's topics), or
            a requested topic's type has no rclpy class here.
    """
    available = bag_topics(reader)
    wanted = list(dict.fromkeys(topics)) if topics else sorted(available)
    require_topics(available, wanted)
    no_class = [t for t in wanted if message_class(available[t][0]) is None]
    if topics and no_class:
        missing = ", ".join(f"{t} ({available[t][0]})" for t in no_class)
        raise ValueError(f"no ROS 2 message type installed for {missing}")
    keep = set(wanted) - set(no_class)
    return [c for c in reader.connections if c.topic in keep], no_class


def to_rclpy(src: Any, cls: type) -> Any:
    """Copy a rosbags message object into an rclpy message of class `cls`.

    Field names are matched case-insensitively (ROS 1 CameraInfo `K` -> `k`) and fields ROS 2
    lacks (`seq`) are dropped.
    """
    out = cls()
    by_lower = {f.name.lower(): f.name for f in dataclasses.fields(src) if not f.name.startswith("__")}
    for name, ftype in cls.get_fields_and_field_types().items():
        source_name = by_lower.get(name.lower())
        if source_name is not None:
            setattr(out, name, _convert(getattr(src, source_name), ftype))
    return out


def _convert(value: Any, ftype: str) -> Any:
    base = ftype.split("<", 1)[-1].rstrip(">").split("[", 1)[0]
    if "/" in base:  # nested message type, maybe a sequence of them
        cls = message_class(base)
        if cls is None:
            raise ValueError(f"message type {base} is not installed")
        if ftype.startswith("sequence<") or "[" in ftype:
            return [to_rclpy(item, cls) for item in value]
        return to_rclpy(value, cls)
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint8 and ftype.startswith("sequence<uint8"):
            return value.tobytes()  # bytes: fast path of rclpy (numpy here costs 45-75 ms for VGA)
        return value if "[" in ftype else value.tolist()
    return value


@dataclasses.dataclass
class PlayStats:
    published: dict[str, int]
    loops: int
    seconds: float


CLOCK_TOPIC = "/clock"


def _bag_messages(reader: Any, connections: list[Any]) -> Any:
    """Iterate `reader.messages(...)` with the storage's read errors as one ValueError.

    The rosbags readers raise ReaderError, ZstdError, MemoryError (a declared length of 2**62) ... from
    inside the bag.
    """
    iterator = reader.messages(connections=connections)
    count = 0
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - any failure of the bag storage after it opened
            names = ", ".join(map(str, getattr(reader, "paths", []))) or "bag"
            raise ValueError(f"cannot read bag {names} after {count} messages: truncated or corrupt "
                             f"({error_reason(err, limit=200)})") from None
        count += 1
        yield item


class BagPlayer:
    """Publishes the selected connections of an open reader on an rclpy node.

    Args:
        clock: also publish rosgraph_msgs/Clock on /clock with the bag time of each message.
    """

    def __init__(self, node: Any, reader: Any, connections: list[Any], rate: float = 1.0,
                 remap: dict[str, str] | None = None, qos_depth: int = 10, clock: bool = False) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.node, self.reader, self.connections, self.rate = node, reader, connections, rate
        # Reliable, like `ros2 bag play`: it also reaches best-effort (sensor data) subscribers.
        qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        remap = remap or {}
        self.publishers: dict[str, Any] = {}
        self.classes: dict[str, type] = {}
        for conn in connections:
            if conn.topic not in self.publishers:
                cls = message_class(conn.msgtype)
                self.classes[conn.topic] = cls
                self.publishers[conn.topic] = node.create_publisher(cls, remap.get(conn.topic, conn.topic), qos)
        self.clock_publisher: Any = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self.clock_publisher = node.create_publisher(Clock, CLOCK_TOPIC, qos)

    def wait_for_subscribers(self, timeout: float, topics: Sequence[str] | None = None) -> bool:
        """Wait until each of `topics` (default: all published) has a subscriber, up to `timeout` s."""
        names = list(topics) if topics else list(self.publishers)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.publishers[t].get_subscription_count() > 0 for t in names if t in self.publishers):
                return True
            time.sleep(0.05)
        return False

    def play(self, loop: bool = False, should_stop: Callable[[], bool] = lambda: False) -> PlayStats:
        """Publish on the recorded schedule (bag time / rate); loop until `should_stop` if asked."""
        published = dict.fromkeys(self.publishers, 0)
        start, loops = time.monotonic(), 0
        while not should_stop():
            loops += 1
            self._play_once(published, should_stop)
            if not loop:
                break
        return PlayStats(published, loops, time.monotonic() - start)

    def _play_once(self, published: dict[str, int], should_stop: Callable[[], bool]) -> None:
        wall0, bag0 = time.monotonic(), None
        for conn, timestamp, raw in _bag_messages(self.reader, self.connections):
            bag0 = timestamp if bag0 is None else bag0
            delay = wall0 + (timestamp - bag0) / 1e9 / self.rate - time.monotonic()
            while delay > 0 and not should_stop():
                time.sleep(min(delay, 0.1))
                delay = wall0 + (timestamp - bag0) / 1e9 / self.rate - time.monotonic()
            if should_stop():
                return
            if self.clock_publisher is not None:
                self.clock_publisher.publish(self._clock(timestamp))
            self.publishers[conn.topic].publish(self._payload(conn, raw))
            published[conn.topic] += 1

    def _clock(self, timestamp: int) -> Any:
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = divmod(int(timestamp), 1_000_000_000)
        return msg

    def _payload(self, conn: Any, raw: bytes) -> Any:
        if self.reader.is2 and getattr(conn.ext, "serialization_format", "cdr") == "cdr":
            return bytes(raw)  # already CDR: rclpy publishes serialized bytes as they are
        return to_rclpy(self.reader.deserialize(raw, conn.msgtype), self.classes[conn.topic])


def play_command(bags: Sequence[str], rate: float = 1.0, loop: bool = False, topics: Sequence[str] | None = None,
                 remaps: Sequence[str] = (), wait_for_subscribers: float = 0.0, list_only: bool = False,
                 linger: float = 0.5, clock: bool = False) -> int:
    """`fusanet play`: returns an exit code; raises ValueError/FileNotFoundError for user errors."""
    remap = {}
    for item in remaps:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise ValueError(f"--remap must look like /old:=/new, got {item!r}")
        remap[src] = dst
    reader = open_bag(bags)
    try:
        if list_only:
            print(describe_topics(reader))
            return 0
        connections, skipped = select_connections(reader, topics)
        if skipped:
            log.warning("not published (message type not installed): %s", ", ".join(skipped))
        return _play_with_rclpy(reader, connections, rate, loop, remap, wait_for_subscribers, linger, clock)
    finally:
        reader.close()


def _play_with_rclpy(reader: Any, connections: list[Any], rate: float, loop: bool, remap: dict[str, str],
                     wait: float, linger: float, clock: bool = False) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node("fusanet_bag_player")
    try:
        player = BagPlayer(node, reader, connections, rate, remap, clock=clock)
        if wait > 0 and not player.wait_for_subscribers(wait):
            node.get_logger().warning(f"no subscriber on every topic after {wait:.0f} s; playing anyway")
        stats = player.play(loop, should_stop=lambda: not rclpy.ok())
        time.sleep(linger)  # let reliable writers deliver the last messages before the participant goes
        total = sum(stats.published.values())
        node.get_logger().info(f"published {total} messages on {len(stats.published)} topics in {stats.seconds:.1f} s")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError:
        raise  # a bag that cannot be read on: the caller's one-line error
    except Exception:
        if rclpy.ok():
            raise
        # a signal shut the context down mid-publish: a requested stop, not a failure
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def add_play_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `fusanet play` (also `python -m fusanet_ros.tools.bag_player`)."""
    p.add_argument("bags", nargs="+", metavar="BAG", help="bag folder or file (several are merged by time)")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate factor (default: 1.0)")
    p.add_argument("--loop", action="store_true", help="play again and again until interrupted")
    p.add_argument("--topics", nargs="+", help="only these topics (default: all with an installed message type)")
    p.add_argument("--remap", action="append", default=[], metavar="OLD:=NEW",
                   help="publish a topic under another name")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for a subscriber on every topic before playing")
    p.add_argument("--list", action="store_true", help="list the bag's topics and exit")
    p.add_argument("--clock", action="store_true",
                   help="publish rosgraph_msgs/Clock on /clock with the bag time (for nodes with use_sim_time)")


def run_play(args: argparse.Namespace) -> int:
    if not args.rate > 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")
    return play_command(args.bags, args.rate, args.loop, args.topics, args.remap, args.wait_for_subscribers, args.list,
                        clock=getattr(args, "clock", False))


def main(argv: list[str] | None = None) -> int:
    """`python -m fusanet_ros.tools.bag_player`: `fusanet play` without loading the core CLI (and torch)."""
    parser = argparse.ArgumentParser(prog="fusanet play", description=__doc__.splitlines()[0])
    add_play_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_play(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"fusanet play: error: {error_reason(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
