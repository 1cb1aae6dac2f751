"""Resource-constrained stitch sampling (SN-Netv2's "ROS").

A stitched network offers one sub-network per stitch configuration, and
their costs are far from uniform: most stitches of an S-L pair sit on a
dozen FLOPs levels while the anchors are alone at the ends. Sampling
stitches uniformly would therefore train the crowded levels far more often
than the sparse ones. SN-Netv2 instead clusters the stitches by FLOPs and
samples a cluster first, then a stitch inside it, so every resource level
gets the same share of the training iterations.

This module reproduces the official behaviour (``group_subnets_by_flops`` in
``classification/utils.py`` and ``sampling_stitch_config`` in ``snnet.py`` of
ziplab/SN-Netv2) in pure Python, with one deliberate change: every draw is a
pure function of ``(seed, iteration[, rank])`` instead of consuming a global
random state, so a resumed run draws exactly what the uninterrupted run
would have drawn, and all ranks agree without communicating.

The FLOPs gap is in the unit of the FLOPs table. SN-Netv2 uses 1.0 GFLOP for
ImageNet classification and 10.0 GFLOPs for dense prediction (segmentation,
detection, depth), whose larger inputs spread the stitches further apart.
"""
import math
import numbers

import numpy as np

__all__ = ['group_by_flops', 'FlopsGroupedSampler']

# Relative tolerance for "the same FLOPs" when a checkpoint's table is
# compared with the current one: both come from the same deterministic
# counter, so anything beyond float round-off means different models.
_FLOPS_RTOL = 1e-6

# How many differing ids an error message lists before it summarises.
_MAX_LISTED = 8


def _as_plain_id(stitch_id):
    """Turn numpy integer ids into ``int`` so state dicts hold plain types.

    Args:
        stitch_id (Hashable): A stitch id as given by the caller.

    Returns:
        Hashable: ``int(stitch_id)`` for integral ids, else the id itself.
    """
    if isinstance(stitch_id, numbers.Integral) and not isinstance(
            stitch_id, bool):
        return int(stitch_id)
    return stitch_id


def _check_flops_table(flops):
    """Validate a ``{stitch_id: flops}`` table and copy it to plain types.

    Args:
        flops (Mapping): Stitch id -> FLOPs of that stitch's sub-network.

    Returns:
        dict: A new ``{id: float}`` dict.

    Raises:
        ValueError: If the table is empty or holds a non-finite or negative
            FLOPs value.
        TypeError: If ``flops`` is not a mapping or a value is not a number.
    """
    if not hasattr(flops, 'items'):
        raise TypeError(
            f'flops must be a mapping {{stitch_id: flops}}, got '
            f'{type(flops).__name__}.')
    if len(flops) == 0:
        raise ValueError('flops is empty: there is no stitch to group.')
    table = {}
    for stitch_id, value in flops.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f'FLOPs of stitch {stitch_id!r} must be a real number, got '
                f'{value!r}.')
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f'FLOPs of stitch {stitch_id!r} must be finite and >= 0, '
                f'got {value!r}.')
        table[_as_plain_id(stitch_id)] = value
    return table


def _check_gap(gap):
    """Validate the FLOPs gap.

    Args:
        gap (float): Largest FLOPs distance to a group's first member;
            ``math.inf`` puts every stitch into one group.

    Returns:
        float: ``gap`` as a float.

    Raises:
        ValueError: If ``gap`` is negative or NaN.
        TypeError: If ``gap`` is not a number.
    """
    if isinstance(gap, bool) or not isinstance(gap, numbers.Real):
        raise TypeError(f'gap must be a real number, got {gap!r}.')
    gap = float(gap)
    if math.isnan(gap) or gap < 0:
        raise ValueError(f'gap must be >= 0 (math.inf for one group), got '
                         f'{gap!r}.')
    return gap


def _check_non_negative_int(value, name):
    """Validate an integer that seeds the random generator.

    Args:
        value (int): The value to check.
        name (str): Its name, for the error message.

    Returns:
        int: ``value`` as a Python ``int``.

    Raises:
        ValueError: If ``value`` is not a non-negative integer; numpy's seed
            sequence rejects negative entries, so they are refused up front
            with a clearer message.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or value < 0:
        raise ValueError(f'{name} must be a non-negative int, got {value!r}.')
    return int(value)


def _sorted_items(table):
    """Order a FLOPs table by FLOPs, ties by id.

    Args:
        table (dict): Stitch id -> FLOPs.

    Returns:
        list[tuple]: ``(id, flops)`` pairs in ascending FLOPs order.
    """
    # The id as second key makes equal-FLOPs stitches come out in the same
    # order however the caller built the dict, so groups are reproducible.
    return sorted(table.items(), key=lambda item: (item[1], item[0]))


def group_by_flops(flops, gap):
    """Cluster stitches into groups of similar FLOPs (SN-Netv2's ROS).

    Stitches are visited in ascending FLOPs order. The first one opens a
    group; each next one joins the current group while its FLOPs are within
    ``gap`` of the group's *first* member, else it opens a new group.
    Measuring from the first member (not the previous one) is what the
    official code does, and it bounds each group's FLOPs span by ``gap``
    instead of letting a chain of small steps grow a group without limit.

    Args:
        flops (Mapping): Stitch id -> FLOPs of its sub-network, in any unit.
        gap (float): Largest FLOPs distance to a group's first member, in
            the unit of ``flops``. SN-Netv2 uses 1.0 (GFLOPs) for
            classification and 10.0 for dense tasks; ``math.inf`` makes
            one group of all stitches (SN-Net v1's uniform sampling).

    Returns:
        list[list]: Groups of stitch ids in ascending FLOPs order; inside a
        group the ids keep the (FLOPs, id) order.

    Raises:
        ValueError: If ``flops`` is empty, holds a negative or non-finite
            value, or ``gap`` is negative.
    """
    table = _check_flops_table(flops)
    gap = _check_gap(gap)
    groups = []
    group_start = None
    for stitch_id, value in _sorted_items(table):
        if group_start is not None and abs(value - group_start) <= gap:
            groups[-1].append(stitch_id)
        else:
            groups.append([stitch_id])
            group_start = value
    return groups


def _check_group_probs(group_probs, num_groups):
    """Validate and normalise per-group sampling probabilities.

    Args:
        group_probs (Sequence[float] | None): One weight per group, or None
            for uniform.
        num_groups (int): Number of groups they must cover.

    Returns:
        list[float] | None: Weights normalised to sum to 1, or None.

    Raises:
        ValueError: If the length differs from ``num_groups``, a weight is
            negative or non-finite, or all weights are zero.
    """
    if group_probs is None:
        return None
    probs = [float(p) for p in group_probs]
    if len(probs) != num_groups:
        raise ValueError(
            f'group_probs has {len(probs)} entries but the FLOPs table '
            f'forms {num_groups} groups.')
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise ValueError(
            f'group_probs must be finite and >= 0, got {probs}.')
    total = math.fsum(probs)
    if total <= 0:
        raise ValueError('group_probs sum to 0: no group could be drawn.')
    # Weights are accepted unnormalised so callers can pass e.g. group
    # sizes; numpy's choice() needs them to sum to 1.
    return [p / total for p in probs]


def _describe_ids(ids):
    """Format a set of stitch ids for an error message, capped in length.

    Args:
        ids (Iterable): The ids.

    Returns:
        str: Up to ``_MAX_LISTED`` ids and a count of the rest.
    """
    ids = sorted(ids, key=repr)
    shown = ', '.join(repr(i) for i in ids[:_MAX_LISTED])
    if len(ids) > _MAX_LISTED:
        shown += f', ... ({len(ids) - _MAX_LISTED} more)'
    return shown


class FlopsGroupedSampler:
    """Draws one stitch per iteration, uniform over FLOPs groups.

    Each draw picks a group (uniformly, or by ``group_probs``) and then a
    stitch uniformly inside it, as SN-Netv2 does. The generator for a draw
    is ``numpy.random.PCG64([seed, iteration])`` (``[seed, iteration,
    rank]`` with ``per_rank``), built fresh each time: no hidden state
    advances between draws, so the sequence does not depend on how many
    draws came before, on a resume, or on other code using ``random`` or
    ``numpy.random``.

    With ``per_rank=False`` every rank draws the same stitch in an
    iteration, so the whole batch trains one sub-network and no rank has to
    broadcast its choice. ``per_rank=True`` is the official classification
    behaviour, where each GPU trains its own stitch.

    Args:
        flops (Mapping): Stitch id -> FLOPs of its sub-network, in any unit.
        gap (float): Largest FLOPs distance to a group's first member, in
            the unit of ``flops`` (SN-Netv2: 1.0 GFLOP for classification,
            10.0 for dense tasks; ``math.inf``: one group, every stitch
            equally likely).
        seed (int): Non-negative base seed. Defaults to 0.
        per_rank (bool): Draw a different stitch on each rank. Defaults to
            False.
        group_probs (Sequence[float] | None): One non-negative weight per
            group (normalised here), or None for uniform. Defaults to None.

    Attributes:
        flops (dict): Copy of the FLOPs table with plain Python types.
        groups (list[list]): Groups from :func:`group_by_flops`.
        gap (float): The FLOPs gap.
        seed (int): The base seed.
        per_rank (bool): Whether ranks draw independently.
        group_probs (list[float] | None): Normalised group weights.
    """

    def __init__(self, flops, gap, seed=0, per_rank=False, group_probs=None):
        self.flops = _check_flops_table(flops)
        self.gap = _check_gap(gap)
        self.groups = group_by_flops(self.flops, self.gap)
        self.seed = _check_non_negative_int(seed, 'seed')
        self.per_rank = bool(per_rank)
        self.group_probs = _check_group_probs(group_probs, len(self.groups))

    @property
    def num_groups(self):
        """int: Number of FLOPs groups."""
        return len(self.groups)

    def _generator(self, iteration, rank):
        """Build the generator owned by one draw.

        Args:
            iteration (int): Training iteration.
            rank (int): Process rank; only used with ``per_rank``.

        Returns:
            numpy.random.Generator: A generator seeded from the draw's key.
        """
        key = [self.seed, iteration]
        if self.per_rank:
            key.append(rank)
        return np.random.Generator(np.random.PCG64(key))

    def sample(self, iteration, rank=0):
        """Draw the stitch to train at ``iteration``.

        Args:
            iteration (int): Non-negative training iteration.
            rank (int): Non-negative process rank. Ignored unless
                ``per_rank`` is set. Defaults to 0.

        Returns:
            Hashable: A stitch id from the FLOPs table.
        """
        iteration = _check_non_negative_int(iteration, 'iteration')
        rank = _check_non_negative_int(rank, 'rank')
        rng = self._generator(iteration, rank)
        group = self.groups[int(rng.choice(self.num_groups,
                                           p=self.group_probs))]
        return group[int(rng.integers(len(group)))]

    def state_dict(self):
        """Export the sampler's settings for a checkpoint's ``meta``.

        Returns:
            dict: Plain Python values: ``seed``, ``gap``, ``per_rank``,
            ``group_probs``, ``groups`` and ``flops``. The last two let a
            resume detect a checkpoint made for other stitches.
        """
        return dict(
            seed=self.seed,
            gap=self.gap,
            per_rank=self.per_rank,
            group_probs=None if self.group_probs is None else list(
                self.group_probs),
            groups=[list(group) for group in self.groups],
            flops=dict(self.flops),
        )

    def _flops_mismatch(self, stored):
        """Describe how a stored FLOPs table differs from the current one.

        Args:
            stored (dict): FLOPs table from a state dict.

        Returns:
            str | None: A description of the difference, or None if the
            tables match up to float round-off.
        """
        stored_ids, current_ids = set(stored), set(self.flops)
        problems = []
        if stored_ids - current_ids:
            problems.append(
                'stitch ids only in the checkpoint: '
                + _describe_ids(stored_ids - current_ids))
        if current_ids - stored_ids:
            problems.append(
                'stitch ids only in the current model: '
                + _describe_ids(current_ids - stored_ids))
        # Equal id sets are not enough: other anchor pairs often yield the
        # same number of stitches, numbered the same way.
        changed = [
            i for i in stored_ids & current_ids if not math.isclose(
                float(stored[i]), self.flops[i], rel_tol=_FLOPS_RTOL)
        ]
        if changed:
            changed.sort(key=repr)
            listed = ', '.join(
                f'{i!r}: {float(stored[i]):g} vs {self.flops[i]:g}'
                for i in changed[:_MAX_LISTED])
            if len(changed) > _MAX_LISTED:
                listed += f', ... ({len(changed) - _MAX_LISTED} more)'
            problems.append(
                'FLOPs differ (checkpoint vs current) for ' + listed)
        return '; '.join(problems) or None

    def load_state_dict(self, state):
        """Restore settings saved by :meth:`state_dict`.

        The checkpoint must describe the same stitches as this sampler;
        otherwise resuming would silently change which sub-networks are
        trained, so a mismatch is an error rather than a warning.

        Args:
            state (dict): A dict from :meth:`state_dict`.

        Raises:
            ValueError: If a key is missing, or the stored FLOPs table or
                groups do not match this sampler's stitches.
        """
        missing = [k for k in ('seed', 'gap', 'per_rank', 'groups', 'flops')
                   if k not in state]
        if missing:
            raise ValueError(
                f'Stitch sampler state lacks {missing}; it was not made by '
                f'FlopsGroupedSampler.state_dict().')
        stored_flops = {
            _as_plain_id(k): v for k, v in dict(state['flops']).items()
        }
        problem = self._flops_mismatch(stored_flops)
        if problem is not None:
            raise ValueError(
                'Stitch sampler state does not match this model: the FLOPs '
                'table mismatch (was the checkpoint made with other anchors '
                f'or stitch settings?): {problem}.')

        gap = _check_gap(state['gap'])
        groups = group_by_flops(self.flops, gap)
        stored_groups = [[_as_plain_id(i) for i in group]
                         for group in state['groups']]
        if stored_groups != groups:
            raise ValueError(
                f'Stitch sampler state does not match this model: the '
                f'stored groups mismatch the groups of the FLOPs table with '
                f'gap={gap:g} ({len(stored_groups)} stored vs {len(groups)} '
                f'recomputed groups).')
        group_probs = _check_group_probs(state.get('group_probs'),
                                         len(groups))
        seed = _check_non_negative_int(state['seed'], 'seed')

        # Assign only after every check passed, so a failed load leaves the
        # sampler as it was.
        self.gap = gap
        self.groups = groups
        self.group_probs = group_probs
        self.seed = seed
        self.per_rank = bool(state['per_rank'])

    def describe(self):
        """Summarise the groups for logs.

        Returns:
            str: One header line, then one line per group with its size,
            FLOPs range and sampling probability.
        """
        lines = [
            f'FlopsGroupedSampler: {len(self.flops)} stitches in '
            f'{self.num_groups} FLOPs groups (gap={self.gap:g}, '
            f'seed={self.seed}, per_rank={self.per_rank})'
        ]
        for index, group in enumerate(self.groups):
            values = [self.flops[i] for i in group]
            prob = (1.0 / self.num_groups if self.group_probs is None else
                    self.group_probs[index])
            noun = 'stitch' if len(group) == 1 else 'stitches'
            if len(group) == 1:
                span = f'{values[0]:.4g}'
            else:
                span = f'{min(values):.4g}-{max(values):.4g}'
            lines.append(
                f'  group {index}: {len(group)} {noun}, FLOPs {span}, '
                f'p={prob:.3f}')
        return '\n'.join(lines)

    def __repr__(self):
        return (f'{type(self).__name__}(num_stitches={len(self.flops)}, '
                f'num_groups={self.num_groups}, gap={self.gap:g}, '
                f'seed={self.seed}, per_rank={self.per_rank})')
