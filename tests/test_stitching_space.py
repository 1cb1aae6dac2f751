"""The stitching space: identical to the official enumeration on 12/24 and
12/12, and a correct general rule for other depth pairs."""
import json
import os.path as osp

import pytest

from flexvit_mm.models.stitching.space import StitchingSpace

OFFICIAL = osp.join(osp.dirname(__file__), 'data',
                    'official_stitch_configs.json')
KIND_OF_COMB = {(0, ): 'anchor', (1, ): 'anchor', (0, 1): 'SL', (1, 0): 'LS',
                (1, 0, 1): 'LSL', (0, 1, 0): 'SLS'}


def _official(depths):
    with open(OFFICIAL) as f:
        return json.load(f)[depths]


def _official_segments(config, depths):
    """Official routes as (anchor, first, last) with inclusive ends."""
    comb = config['comb_id']
    if len(comb) == 1:
        return [(comb[0], 0, depths[comb[0]] - 1)]
    segments = []
    for anchor, (first, last) in zip(comb, config['route']):
        segments.append((anchor, first, min(last, depths[anchor] - 1)))
    return segments


@pytest.mark.parametrize('key,depths', [('12/24', (12, 24)),
                                        ('12/12', (12, 12))])
def test_identical_to_the_official_enumeration(key, depths):
    official = _official(key)
    space = StitchingSpace(depths)
    assert len(space.routes) == len(official['configs']) == 135
    for config, route in zip(official['configs'], space.routes.values()):
        assert route.kind == KIND_OF_COMB[tuple(config['comb_id'])]
        assert [(s.anchor, s.first, s.last) for s in route.segments] == \
            _official_segments(config, depths) or not route.is_stitch
        if len(config['comb_id']) > 1:
            layers = config['stitch_layer_ids'][:-1]  # drop the Identity
            fronts = config['comb_id'][:-1]
            assert list(route.layers) == list(zip(fronts, layers))
    # The ids the official code trains and evaluates.
    valid = (official['anchor_ids'] + official['sl_ids'] +
             official['ls_ids'] + official['lsl_ids'] + official['sls_ids'])
    assert list(space.stitch_ids) == sorted(valid)
    assert len(space.stitch_ids) == 134 and space.unused_ids == (13, )
    assert [space.num_layers[0], space.num_layers[1]] == [
        official['num_stitches'][0], official['num_stitches'][1]]


def test_known_routes_and_names_for_12_24():
    space = StitchingSpace((12, 24))
    assert space[0].name == 'S[0-11]' and space[1].name == 'L[0-23]'
    assert space[2].name == 'S[0-0]→L[2-23]'
    assert space[12].name == 'S[0-10]→L[22-23]'
    assert space[14].name == 'L[0-1]→S[1-11]'
    assert space[24].name == 'L[0-21]→S[11-11]'
    assert space[25].name == 'L[0-1]→S[1-1]→L[4-23]'
    assert space[80].name == 'S[0-0]→L[2-3]→S[2-11]'
    assert space[134].name == 'S[0-9]→L[20-21]→S[11-11]'
    counts = {k: len(space.ids_of_kind(k))
              for k in ('anchor', 'SL', 'LS', 'LSL', 'SLS')}
    assert counts == dict(anchor=2, SL=11, LS=11, LSL=55, SLS=55)


def test_unknown_ids_name_the_valid_ones():
    space = StitchingSpace((12, 24))
    with pytest.raises(ValueError, match=r'valid ids are 0-12, 14-134') as e:
        space[13]
    assert 'not a stitch' in str(e.value)
    for bad in (135, -1, 'x', 2.5, True):
        with pytest.raises(ValueError, match='0-12, 14-134'):
            space.check_id(bad)
    assert space.check_id('80') == 80


@pytest.mark.parametrize('depths', [(12, 24), (12, 12), (12, 32), (24, 24),
                                    (6, 9), (4, 13), (1, 3)])
def test_every_route_is_well_formed(depths):
    space = StitchingSpace(depths)
    d = dict(enumerate(depths))
    layer_targets = {(f.front, f.layer): f for f in space.layer_fits()}
    for route in space:
        segments = route.segments
        assert segments[0].first == 0
        assert segments[-1].last == d[segments[-1].anchor] - 1
        for seg in segments:
            assert 0 <= seg.first <= seg.last < d[seg.anchor]
        for before, after, (front, layer) in zip(segments, segments[1:],
                                                 route.layers):
            assert before.anchor == front != after.anchor
            # Resuming at the block after the one the layer was fitted to.
            fit = layer_targets[(front, layer)]
            assert fit.source_block == before.last
            assert after.first == fit.target_block + 1
        # Blocks progress through the network: relative depth never goes
        # back by more than one block of the deeper anchor.
        positions = [(s.first / d[s.anchor], (s.last + 1) / d[s.anchor])
                     for s in segments]
        for (_, end), (start, _) in zip(positions, positions[1:]):
            assert abs(start - end) < 1 / min(depths) + 1e-9
    names = [r.name for r in space]
    assert len(set(names)) == len(names)


def test_general_rule_for_12_32():
    space = StitchingSpace((12, 32))
    # SL resumes at ceil((i+1)*32/12); the official (i+1)*(32//12) would
    # leave large blocks 24..31 unreachable from the small model.
    assert space[2].name == 'S[0-0]→L[3-31]'
    assert space.routes[13].is_stitch is False  # i = 11 runs no L block
    assert len(space.ids_of_kind('LS')) == 11
    assert len(space.ids_of_kind('SL')) == 11


def test_v1_mode_keeps_sl_only():
    space = StitchingSpace((12, 24), mode='v1')
    assert list(space.stitch_ids) == list(range(13))
    assert {space[i].kind for i in space.stitch_ids} == {'anchor', 'SL'}
    with pytest.raises(ValueError, match='0-12'):
        space[14]


def test_dense_out_indices_and_layer_fits_match_official():
    space = StitchingSpace((12, 24))
    assert space.small_out_indices((9, 14, 19, 23)) == [4, 7, 9, 11]
    assert space.small_out_indices((4, 11, 17, 23)) == [2, 5, 8, 11]
    fits = {(f.front, f.layer): (f.source_block, f.target_block)
            for f in space.layer_fits()}
    assert len(fits) == 12 + 11
    assert fits[(0, 0)] == (0, 1) and fits[(0, 11)] == (11, 23)
    assert fits[(1, 0)] == (1, 0) and fits[(1, 10)] == (21, 10)


def test_bad_depths():
    with pytest.raises(ValueError, match='shallower anchor first'):
        StitchingSpace((24, 12))
    with pytest.raises(ValueError, match='two anchors'):
        StitchingSpace((12, ))
