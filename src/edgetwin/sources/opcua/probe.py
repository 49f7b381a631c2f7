"""``edgetwin probe opcua``: browse a server's address space to find the node ids to configure.

Walks down from Objects (or a given node), depth first, listing each node's NodeId, browse
name, class, and for variables the data type, value and whether it is writable: what an
engineer needs to write the ``points`` of an opcua source.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError

from edgetwin.core.errors import SourceUnavailable

_CLOSE_ERRORS = (OSError, TimeoutError, UaError)
MAX_NODES = 2000  # a probe is for looking around, not for copying a whole server


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as the probe shows it."""

    depth: int
    node_id: str
    name: str
    node_class: str
    data_type: str | None = None
    value: Any = None
    writable: bool | None = None


async def browse(endpoint: str, start: str | None = None, max_depth: int = 4,
                 timeout_s: float = 5.0) -> list[NodeInfo]:
    """The nodes under ``start`` (default: Objects), down to ``max_depth``, namespace 0 skipped.

    Raises:
        SourceUnavailable: the server cannot be reached or refuses the session.
    """
    client = Client(endpoint, timeout=timeout_s)
    try:
        await client.connect()
    except (OSError, TimeoutError, UaError) as err:
        raise SourceUnavailable(f"opcua {endpoint}: cannot connect: {err}") from err
    try:
        root = client.get_node(start) if start else client.nodes.objects
        found: list[NodeInfo] = []
        await _walk(client, root, 0, max_depth, found)
        return found
    finally:
        with contextlib.suppress(*_CLOSE_ERRORS):  # a frozen server must not hang the probe
            await asyncio.wait_for(client.disconnect(), timeout_s)


async def _walk(client: Client, node: Any, depth: int, max_depth: int,
                found: list[NodeInfo]) -> None:
    if depth > max_depth or len(found) >= MAX_NODES:
        return
    for child in await node.get_children():
        if child.nodeid.NamespaceIndex == 0:
            continue  # the standard address space: the same on every server
        node_class = await child.read_node_class()
        name = (await child.read_browse_name()).Name
        info = NodeInfo(depth, child.nodeid.to_string(), name, node_class.name)
        if node_class == ua.NodeClass.Variable:
            try:
                value = await child.read_value()
                type_node = client.get_node(await child.read_data_type())
                data_type = (await type_node.read_browse_name()).Name
                access = await child.read_attribute(AttributeIds.UserAccessLevel)
                writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
            except UaError as err:
                value, data_type, writable = f"<{err}>", None, None
            info = NodeInfo(depth, info.node_id, name, info.node_class, data_type,
                            _short(value), writable)
        found.append(info)
        if len(found) >= MAX_NODES:
            return
        if node_class == ua.NodeClass.Object:
            await _walk(client, child, depth + 1, max_depth, found)


def _short(value: Any) -> Any:
    if isinstance(value, list) and len(value) > 4:
        return f"[{len(value)} values]"
    return value


def render(nodes: list[NodeInfo]) -> str:
    """The tree, indented, one node a line."""
    lines = []
    for n in nodes:
        head = f"{'  ' * n.depth}{n.name}  [{n.node_id}]"
        if n.node_class == "Variable":
            rw = "rw" if n.writable else "r"
            head += f"  {n.data_type} {rw} = {n.value!r}"
        elif n.node_class == "Method":
            head += "  (method)"
        lines.append(head)
    return "\n".join(lines)
