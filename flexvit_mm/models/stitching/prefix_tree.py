"""The route tree: where stitches share their first computations.

Every stitch runs a sequence of *steps* (embed with an anchor, run one
block, apply one stitching layer). Routes that start alike compute their
common first steps identically: every route that begins with small blocks
0..i, every LS/LSL route that begins with large blocks 0..j, every SLS
route that shares ``S[0..i] -> L[e..j]``. Put in a trie, the routes become
a tree whose nodes are distinct prefixes; evaluating many stitches on one
batch then costs the union of the prefixes instead of their sum.

Pure Python (no torch): the backbone turns its routes into step sequences,
and this module answers which prefixes are shared, in which order to run
the routes (depth-first, so that a cached prefix is never needed again once
the walk has left it), and what the sharing saves.
"""
from typing import Callable, Dict, Hashable, List, Sequence, Tuple

__all__ = ['PrefixTree']


class PrefixTree:
    """A trie of step sequences, one per key (stitch id).

    Args:
        paths (dict): ``{key: sequence of hashable steps}``.

    Example:
        >>> tree = PrefixTree({1: 'abc', 2: 'abd', 3: 'xy'})
        >>> tree.depth_first()
        [1, 2, 3]
        >>> tree.branch_steps(1)  # 'ab' is shared by routes 1 and 2
        (1,)
        >>> tree.union_cost(lambda step: 1), tree.total_cost(lambda s: 1)
        (6, 8)
    """

    def __init__(self, paths: Dict[Hashable, Sequence[Hashable]]):
        self.paths = {key: tuple(steps) for key, steps in paths.items()}
        if not self.paths:
            raise ValueError('PrefixTree needs at least one path.')
        # Node 0 is the empty prefix; children[(parent, step)] -> node.
        self._children: Dict[Tuple[int, Hashable], int] = {}
        self._steps: List[Hashable] = [None]
        self._fanout: List[int] = [0]
        self._node_paths: Dict[Hashable, Tuple[int, ...]] = {}
        for key, steps in self.paths.items():
            node, nodes = 0, []
            for step in steps:
                child = self._children.get((node, step))
                if child is None:
                    child = len(self._steps)
                    self._children[(node, step)] = child
                    self._steps.append(step)
                    self._fanout.append(0)
                    self._fanout[node] += 1
                node = child
                nodes.append(node)
            # A path ending here is one more way the walk leaves the node.
            self._fanout[node] += 1
            self._node_paths[key] = tuple(nodes)

    @property
    def num_nodes(self) -> int:
        """Distinct non-empty prefixes, i.e. steps run once each when
        every path is evaluated with sharing."""
        return len(self._steps) - 1

    def node_path(self, key) -> Tuple[int, ...]:
        """The node reached after each step of ``key``'s path: two paths
        share their first ``t + 1`` steps iff their ``node_path[t]`` agree.
        """
        return self._node_paths[key]

    def branch_steps(self, key) -> Tuple[int, ...]:
        """Indices ``t`` of ``key``'s path after which another path leaves
        it: the only points worth keeping a result for."""
        return tuple(t for t, node in enumerate(self._node_paths[key])
                     if self._fanout[node] > 1)

    def depth_first(self) -> List[Hashable]:
        """The keys in a depth-first order of the tree (lexicographic in
        the tree's own child order), so that paths sharing a prefix run
        one after the other and a prefix is left for good once passed."""
        return sorted(self.paths, key=lambda key: self._node_paths[key])

    def union_cost(self, cost: Callable[[Hashable], float]) -> float:
        """Cost of every distinct prefix once: ``sum(cost(step))`` over the
        tree's nodes."""
        return sum(cost(step) for step in self._steps[1:])

    def total_cost(self, cost: Callable[[Hashable], float]) -> float:
        """Cost of every path on its own: ``sum(cost(step))`` over all
        paths' steps."""
        return sum(cost(step) for steps in self.paths.values()
                   for step in steps)
