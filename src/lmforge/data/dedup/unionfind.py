"""Union-find over document indices: transitive duplicate clusters (FineWeb's MinHash stage 3).

Each cluster's root is its smallest index. Indices are positions in corpus order, so the
root is the document to keep (the first occurrence) and the choice does not depend on the
order in which pairs were found.
"""

from __future__ import annotations


class UnionFind:
    """Disjoint sets over ``0 .. size-1`` with path halving; ``union`` keeps the smaller root."""

    def __init__(self, size: int = 0) -> None:
        self.parent: list[int] = list(range(size))

    def add(self) -> int:
        """Add a new singleton set and return its index."""
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]  # path halving keeps later finds short
            item = parent[item]
        return item

    def union(self, first: int, second: int) -> int:
        """Merge the sets of ``first`` and ``second``; return the merged set's root (the smaller one)."""
        root_a, root_b = self.find(first), self.find(second)
        if root_a == root_b:
            return root_a
        if root_b < root_a:
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        return root_a
