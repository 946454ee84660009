"""The audit log's Merkle tree against RFC 9162's definition, and its inclusion paths."""

from __future__ import annotations

import hashlib

import pytest

from review_opt_out import merkle


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, as written: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:split]) + reference_root(leaves[split:])).digest()


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(hashlib.sha256(str(n).encode()).hexdigest()) for n in range(count)]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 100])
def test_the_tree_is_rfc_9162s_and_every_leaf_leads_to_its_root(size: int) -> None:
    tree = merkle.levels(leaves(size))
    assert merkle.root(tree) == reference_root(leaves(size))
    for index, leaf in enumerate(leaves(size)):
        assert merkle.root_from_path(leaf, index, size, merkle.inclusion_path(tree, index)) == merkle.root(tree)


def test_a_leaf_at_another_place_or_a_wrong_path_leads_elsewhere() -> None:
    tree = merkle.levels(leaves(9))
    path = merkle.inclusion_path(tree, 4)
    assert merkle.root_from_path(leaves(9)[4], 5, 9, path) != merkle.root(tree)  # moved one place
    assert merkle.root_from_path(leaves(9)[3], 4, 9, path) != merkle.root(tree)  # another entry
    with pytest.raises(ValueError, match="too long"):
        merkle.root_from_path(leaves(9)[4], 4, 9, [*path, path[0]])
    with pytest.raises(ValueError, match="too short"):
        merkle.root_from_path(leaves(9)[4], 4, 9, path[:-1])
    with pytest.raises(ValueError, match="outside"):
        merkle.root_from_path(leaves(9)[4], 9, 9, path)


def test_a_leaf_can_never_pass_for_a_node() -> None:
    # Without the 0x00/0x01 prefixes, a node's two children could be presented as one leaf.
    tree = merkle.levels(leaves(2))
    assert merkle.root(tree) != hashlib.sha256(leaves(2)[0] + leaves(2)[1]).digest()
