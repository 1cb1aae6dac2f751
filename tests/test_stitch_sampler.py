"""FLOPs-grouped stitch sampler (SN-Netv2's resource-constrained sampling)."""
import collections
import pickle

import pytest

from flexvit_mm.models.stitching.sampler import (FlopsGroupedSampler,
                                                 group_by_flops)

# FLOPs levels (GFLOPs) of the stitches between the DeiT-S and DeiT-L
# anchors on ImageNet, as the official SN-Netv2 S-L model lays them out.
SL_LEVELS = [9.4, 14.2, 18.9, 23.7, 28.4, 33.1, 37.9, 42.6, 47.4, 52.1, 56.8]
SL_ANCHORS = (4.61, 61.60)


def sl_flops_table():
    """134 stitches: two anchors and 12 stitches on each of 11 levels.

    Returns:
        dict: Stitch id -> GFLOPs. Ids are interleaved across levels so the
        grouping cannot rely on ids already being in FLOPs order.
    """
    table = {0: SL_ANCHORS[0], 133: SL_ANCHORS[1]}
    for k in range(12):
        for level_index, level in enumerate(SL_LEVELS):
            # Within-level spread of 0.11 G, under the 0.2 G of the real
            # table, so each level is exactly one group at gap 1.0.
            table[1 + k * len(SL_LEVELS) + level_index] = level + 0.01 * k
    return table


def test_official_sl_structure_gives_13_groups():
    flops = sl_flops_table()
    assert len(flops) == 134
    groups = group_by_flops(flops, 1.0)
    assert [len(g) for g in groups] == [1] + [12] * 11 + [1]
    assert groups[0] == [0] and groups[-1] == [133]
    # Every level's 12 stitches form one group, in ascending FLOPs order.
    for level, group in zip(SL_LEVELS, groups[1:-1]):
        values = [flops[i] for i in group]
        assert values == sorted(values)
        assert all(abs(v - level) < 0.2 for v in values)
    assert sorted(i for g in groups for i in g) == list(range(134))


def test_dense_gap_merges_levels():
    # A 10 G gap (the dense-task default) must merge neighbouring levels:
    # 4.61 with 9.4 and 14.2 (both within 10 of 4.61), and so on.
    groups = group_by_flops(sl_flops_table(), 10.0)
    assert len(groups) < 13
    assert groups[0][0] == 0
    assert set(groups[0]) >= {i for i, v in sl_flops_table().items()
                              if v <= 14.4}


def test_gap_is_measured_from_first_member():
    # 1.2 is within 1 of the previous member (0.6) but not of the first (0),
    # so it opens a new group instead of chaining onto the first.
    assert group_by_flops({'a': 0.0, 'b': 0.6, 'c': 1.2}, 1.0) == [['a', 'b'],
                                                                 ['c']]
    # The boundary is inclusive: exactly gap away still joins.
    assert group_by_flops({0: 2.0, 1: 3.0, 2: 3.5}, 1.0) == [[0, 1], [2]]
    # Gap 0 groups only identical FLOPs; ties are ordered by id.
    assert group_by_flops({5: 1.0, 2: 1.0, 9: 0.5}, 0.0) == [[9], [2, 5]]


def test_grouping_ignores_dict_order():
    flops = sl_flops_table()
    reversed_flops = dict(reversed(list(flops.items())))
    assert group_by_flops(reversed_flops, 1.0) == group_by_flops(flops, 1.0)


@pytest.mark.parametrize('flops, gap', [({}, 1.0), ({0: 1.0}, -0.5),
                                        ({0: -1.0}, 1.0),
                                        ({0: float('nan')}, 1.0)])
def test_group_by_flops_rejects_bad_input(flops, gap):
    with pytest.raises(ValueError):
        group_by_flops(flops, gap)


def test_sampler_rejects_bad_arguments():
    flops = {0: 1.0, 1: 5.0}
    with pytest.raises(ValueError, match='group_probs'):
        FlopsGroupedSampler(flops, 1.0, group_probs=[1.0])
    with pytest.raises(ValueError, match='seed'):
        FlopsGroupedSampler(flops, 1.0, seed=-1)
    with pytest.raises(ValueError, match='iteration'):
        FlopsGroupedSampler(flops, 1.0).sample(-1)


def test_sample_is_a_pure_function_of_seed_and_iteration():
    flops = sl_flops_table()
    a = FlopsGroupedSampler(flops, 1.0, seed=3)
    b = FlopsGroupedSampler(flops, 1.0, seed=3)
    # Drawing out of order, or repeating a draw, must not change anything.
    forward = [a.sample(i) for i in range(200)]
    backward = [b.sample(i) for i in reversed(range(200))][::-1]
    assert forward == backward
    assert [a.sample(i) for i in range(200)] == forward
    assert all(s in flops for s in forward)
    # Another seed gives another sequence.
    other = FlopsGroupedSampler(flops, 1.0, seed=4)
    assert [other.sample(i) for i in range(200)] != forward


def test_all_ranks_agree_without_per_rank():
    sampler = FlopsGroupedSampler(sl_flops_table(), 1.0, seed=7)
    for i in range(100):
        draws = {sampler.sample(i, rank=r) for r in range(8)}
        assert len(draws) == 1


def test_ranks_differ_with_per_rank():
    sampler = FlopsGroupedSampler(sl_flops_table(), 1.0, seed=7,
                                  per_rank=True)
    differing = 0
    for i in range(100):
        draws = [sampler.sample(i, rank=r) for r in range(8)]
        # Still reproducible per (iteration, rank).
        assert draws == [sampler.sample(i, rank=r) for r in range(8)]
        differing += len(set(draws)) > 1
    # 8 ranks choosing among 134 stitches almost never all coincide.
    assert differing >= 95


def test_resume_from_state_dict_continues_the_sequence():
    flops = sl_flops_table()
    for per_rank in (False, True):
        original = FlopsGroupedSampler(flops, 1.0, seed=11, per_rank=per_rank)
        k = 37
        _ = [original.sample(i, rank=1) for i in range(k)]
        # The state goes through a checkpoint's meta, i.e. a pickle.
        state = pickle.loads(pickle.dumps(original.state_dict()))
        # A fresh sampler built with other settings takes the stored ones.
        resumed = FlopsGroupedSampler(flops, 1.0, seed=0, per_rank=False)
        resumed.load_state_dict(state)
        assert resumed.seed == 11 and resumed.per_rank is per_rank
        assert resumed.gap == 1.0
        for i in range(k, k + 51):
            for rank in (0, 1, 3):
                assert resumed.sample(i, rank) == original.sample(i, rank)


def test_state_dict_holds_plain_python_types():
    sampler = FlopsGroupedSampler({0: 1.0, 1: 1.5, 2: 9.0}, 1.0,
                                  group_probs=[3, 1])
    state = sampler.state_dict()
    assert state['groups'] == [[0, 1], [2]]
    assert state['flops'] == {0: 1.0, 1: 1.5, 2: 9.0}
    assert state['group_probs'] == [0.75, 0.25]

    def plain(value):
        if isinstance(value, dict):
            return all(plain(k) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or type(value) in (int, float, bool, str)

    assert plain(state)


def test_state_dict_keeps_gap_and_group_probs():
    flops = {0: 0.0, 1: 0.6, 2: 1.2, 3: 5.0}
    saved = FlopsGroupedSampler(flops, 2.0, seed=5, group_probs=[1, 0])
    restored = FlopsGroupedSampler(flops, 1.0)
    assert restored.groups == [[0, 1], [2], [3]]
    restored.load_state_dict(saved.state_dict())
    assert restored.gap == 2.0
    assert restored.groups == [[0, 1, 2], [3]]
    # Group 1 has weight 0, so only group 0's stitches can be drawn.
    assert {restored.sample(i) for i in range(200)} == {0, 1, 2}


def test_load_state_dict_rejects_other_stitches():
    flops = sl_flops_table()
    sampler = FlopsGroupedSampler(flops, 1.0, seed=2)

    # A checkpoint of a model with fewer stitches.
    fewer = {i: v for i, v in flops.items() if i < 100}
    with pytest.raises(ValueError, match='mismatch') as info:
        sampler.load_state_dict(FlopsGroupedSampler(fewer, 1.0).state_dict())
    assert 'only in the current model' in str(info.value)
    assert '100' in str(info.value)

    # Same ids but other anchors (other FLOPs): also refused.
    other_anchors = {i: v * 0.3 for i, v in flops.items()}
    with pytest.raises(ValueError, match='mismatch') as info:
        sampler.load_state_dict(
            FlopsGroupedSampler(other_anchors, 1.0).state_dict())
    assert 'FLOPs differ' in str(info.value)

    # Stored groups that do not follow from the table are refused too.
    state = sampler.state_dict()
    state['groups'] = [sorted(flops)]
    with pytest.raises(ValueError, match='groups mismatch'):
        sampler.load_state_dict(state)

    # A failed load leaves the sampler untouched.
    assert sampler.seed == 2
    assert len(sampler.groups) == 13


def test_groups_are_drawn_uniformly_and_every_stitch_appears():
    flops = sl_flops_table()
    sampler = FlopsGroupedSampler(flops, 1.0, seed=0)
    group_of = {i: g for g, group in enumerate(sampler.groups) for i in group}
    n = 13000
    draws = [sampler.sample(i) for i in range(n)]
    counts = collections.Counter(group_of[s] for s in draws)
    expected = n / 13
    chi2 = sum((counts[g] - expected) ** 2 / expected for g in range(13))
    # 12 degrees of freedom: P(chi2 > 32.9) = 0.001.
    assert chi2 < 32.9, counts
    # Uniform over groups, not over stitches: each anchor is drawn about
    # 1/13 of the time, far above the 1/134 of uniform stitch sampling.
    per_stitch = collections.Counter(draws)
    assert per_stitch[0] > n / 20 and per_stitch[133] > n / 20
    assert set(per_stitch) == set(flops)


def test_group_probs_bias_the_group_choice():
    flops = sl_flops_table()
    probs = [0.0] * 13
    probs[5] = 3.0
    probs[12] = 1.0
    sampler = FlopsGroupedSampler(flops, 1.0, group_probs=probs)
    draws = [sampler.sample(i) for i in range(2000)]
    in_5 = sum(d in set(sampler.groups[5]) for d in draws)
    assert set(draws) <= set(sampler.groups[5]) | {133}
    assert 0.70 < in_5 / len(draws) < 0.80


def test_describe_lists_each_group():
    sampler = FlopsGroupedSampler(sl_flops_table(), 1.0)
    text = sampler.describe()
    lines = text.splitlines()
    assert '134 stitches' in lines[0] and '13 FLOPs groups' in lines[0]
    assert len(lines) == 14
    assert 'group 0: 1 stitch,' in lines[1] and '4.61' in lines[1]
    assert 'group 1: 12 stitches' in lines[2] and '9.4-9.51' in lines[2]
    assert '61.6' in lines[-1]


def test_module_does_not_import_torch():
    import ast
    import inspect

    from flexvit_mm.models.stitching import sampler as module
    tree = ast.parse(inspect.getsource(module))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split('.')[0])
    assert 'torch' not in imported


def test_package_exports():
    from flexvit_mm.models import stitching
    assert stitching.FlopsGroupedSampler is FlopsGroupedSampler
    assert stitching.group_by_flops is group_by_flops
    assert {'FlopsGroupedSampler', 'group_by_flops'} <= set(stitching.__all__)
