"""A Merkle tree over the audit chain's entries, as Certificate Transparency builds one (RFC 9162).

The chain alone proves order to whoever holds all of it. A household must not see other
households' entries, so what it gets is a signed tree head (size and root) and, for each
of its own entries, the hashes of the sibling subtrees on the way to the root: enough to
recompute the root from its entry alone, and nothing about what the other entries say.

Leaves are the entries' chain hashes (which already cover their content and their place
in the chain). Hashing follows RFC 9162: a 0x00 prefix for leaves and 0x01 for nodes, so a
node can never pass for a leaf. An odd node at the end of a level moves up unpaired, which
gives exactly RFC 9162's left-balanced tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(entry_hash: str) -> bytes:
    """The tree's leaf for one audit entry (its chain hash, hex)."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, the root alone last."""
    if not leaves:
        raise ValueError("a tree needs at least one leaf")
    tree = [list(leaves)]
    while len(tree[-1]) > 1:
        below = tree[-1]
        above = [_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        tree.append(above)
    return tree


def root(tree: list[list[bytes]]) -> bytes:
    """The tree's root."""
    return tree[-1][0]


def inclusion_path(tree: list[list[bytes]], index: int) -> list[bytes]:
    """The sibling hashes from leaf `index` up to the root (an unpaired node has none)."""
    path = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root a leaf at `index` of a tree of `size` leaves leads to along `path`.

    Raises ValueError when the path has the wrong length for that place in that tree.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is outside a tree of {size}")
    node, width, steps = leaf, size, iter(path)
    while width > 1:
        if index % 2 or index + 1 < width:  # a sibling exists at this level
            sibling = next(steps, None)
            if sibling is None:
                raise ValueError("the inclusion path is too short")
            node = _node(sibling, node) if index % 2 else _node(node, sibling)
        index //= 2
        width = (width + 1) // 2
    if next(steps, None) is not None:
        raise ValueError("the inclusion path is too long")
    return node
