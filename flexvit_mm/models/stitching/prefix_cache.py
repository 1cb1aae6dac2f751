"""Keeping the shared prefixes of stitches while a sweep evaluates them.

:class:`PrefixCache` holds, per input tensor, the token states at the
branch points of a :class:`~.prefix_tree.PrefixTree` along the route being
run. Routes are run in the tree's depth-first order, so when a route does
not continue a kept state, no later route will: the state is dropped. The
memory held is therefore bounded by the branch points on one route (times
the distinct inputs seen, e.g. the crops of a sliding-window test), not by
the number of stitches.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .prefix_tree import PrefixTree

__all__ = ['PrefixCache']


@dataclass
class _State:
    """Tokens after step ``step`` of a route whose node there is
    ``node``, and the dense outputs emitted so far."""
    step: int
    node: int
    tokens: torch.Tensor
    outputs: Dict[int, object]


@dataclass
class _InputStack:
    inputs: torch.Tensor
    states: List[_State] = field(default_factory=list)


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if (a.data_ptr() == b.data_ptr() and a.stride() == b.stride()
            and a._version == b._version):
        return True
    # Equal content, another tensor: e.g. the same crop cut again, or a
    # flip made again for the next stitch.
    return bool(torch.equal(a, b))


class PrefixCache:
    """Branch-point states of the routes in ``tree``, per input.

    Args:
        tree (PrefixTree): The routes (keys: stitch ids) to share between.
        max_inputs (int): Distinct inputs kept at once (least recently used
            dropped first): one per crop of a sliding-window test is enough
            to share across stitches. Defaults to 16.
    """

    def __init__(self, tree: PrefixTree, max_inputs: int = 16):
        if max_inputs < 1:
            raise ValueError(f'max_inputs must be >= 1, got {max_inputs}.')
        self.tree = tree
        self.max_inputs = max_inputs
        self._stacks: List[_InputStack] = []
        self._branch = {key: frozenset(tree.branch_steps(key))
                        for key in tree.paths}
        self.steps_run = 0
        self.steps_reused = 0

    def __contains__(self, key) -> bool:
        return key in self._branch

    def clear(self) -> None:
        """Drop every kept state (e.g. at a new batch)."""
        self._stacks = []

    def _stack_for(self, inputs: torch.Tensor) -> _InputStack:
        for index, stack in enumerate(self._stacks):
            if _same_tensor(stack.inputs, inputs):
                # most recently used last
                self._stacks.append(self._stacks.pop(index))
                return stack
        stack = _InputStack(inputs)
        self._stacks.append(stack)
        if len(self._stacks) > self.max_inputs:
            self._stacks.pop(0)
        return stack

    def resume(self, key, inputs: torch.Tensor
               ) -> Tuple[int, Optional[_State], '_InputStack']:
        """Where route ``key`` can start on ``inputs``.

        Returns:
            tuple: ``(first step to run, the state to start from or None,
            the input's stack to pass to :meth:`keep`)``.
        """
        stack = self._stack_for(inputs)
        path = self.tree.node_path(key)
        states = stack.states
        while states and not (states[-1].step < len(path)
                              and path[states[-1].step] == states[-1].node):
            states.pop()  # depth-first: no later route continues it
        if not states:
            return 0, None, stack
        state = states[-1]
        self.steps_reused += state.step + 1
        return state.step + 1, state, stack

    def is_branch_point(self, key, step: int) -> bool:
        return step in self._branch[key]

    def keep(self, stack: _InputStack, key, step: int,
             tokens: torch.Tensor, outputs: Dict[int, object]) -> None:
        """Keep the state after ``step`` of route ``key``."""
        stack.states.append(_State(step, self.tree.node_path(key)[step],
                                   tokens, dict(outputs)))
