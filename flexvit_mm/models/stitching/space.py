"""The stitching space of SN-Netv2: every route through two anchors.

Pure Python (no torch), so that ids, routes and names can be listed,
tested and documented without building a model.

Anchor 0 is the shallow/narrow ("small", S) model of depth ``d0``, anchor 1
the deep/wide ("large", L) model of depth ``d1 >= d0``. Large block ``j``
corresponds to small block ``m(j) = floor(j * d0 / d1)`` (nearest-neighbour
stretching of the small model's block indices over the large one).

Routes, in id order (identical to the official
``get_stitch_configs_bidirection`` for depth pairs 12/24 and 12/12):

1. anchors: id 0 = S alone, id 1 = L alone;
2. SL, for every small block ``i``: S[0..i] -> S->L layer i -> L[e(i)..],
   where ``e(i) = ceil((i + 1) * d1 / d0)`` is the first large block that
   corresponds to a later small block. For an integer ratio ``r = d1 / d0``
   this is the official ``(i + 1) * r``. The entry with ``i = d0 - 1`` runs
   no large block (``e = d1``); it keeps its id (13 for 12/24) but is not a
   stitch, as in the official code;
3. LS, for every large block ``j < d1 - 1`` that is the last one mapped to
   its small block (``m(j + 1) != m(j)``): L[0..j] -> L->S layer m(j) ->
   S[m(j)+1..]. For 12/24 these are the odd ``j``, as the official
   ``j % 2 == 1`` rule; for 12/12 every ``j``;
4. LSL: every LS route followed by every SL cut ``i`` with ``i < d0 - 1``
   and ``i >= m(j) + 1`` (a non-empty small segment);
5. SLS: every SL cut ``i`` followed by every LS cut ``j >= e(i)``.

The general rule reduces to the official one on 12/24 and 12/12 and stays
correct for pairs the official code gets wrong (its ``i % 2`` and
``front != 11`` tests hard-code a small depth of 12 and a ratio of 2), e.g.
12/32, 24/24 or 6/9.

Stitching layers are shared between routes exactly as officially: S->L
layer ``i`` serves every route that leaves the small model after block
``i``; L->S layer ``m(j)`` every route that leaves the large model after
block ``j``. There are ``d0`` S->L layers (the last one only maps the final
small feature to the large width for dense outputs) and ``d0 - 1`` L->S
layers.
"""
import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

SMALL, LARGE = 0, 1
KINDS = ('anchor', 'SL', 'LS', 'LSL', 'SLS')


@dataclass(frozen=True)
class Segment:
    """Blocks ``first..last`` (inclusive) of one anchor."""
    anchor: int
    first: int
    last: int


@dataclass(frozen=True)
class Route:
    """One entry of the stitching space.

    Attributes:
        id (int): The stitch id (the official index).
        kind (str): One of ``anchor``, ``SL``, ``LS``, ``LSL``, ``SLS``.
        segments (tuple[Segment]): The blocks run, in order.
        layers (tuple[tuple[int, int]]): For every cut between two
            segments, the stitching layer used, as ``(front anchor, layer
            index)``: ``(0, i)`` is S->L layer i, ``(1, k)`` L->S layer k.
        name (str): Readable form, e.g. ``S[0-0]→L[2-23]``.
        is_stitch (bool): False for the SL entry that runs no large block.
    """
    id: int
    kind: str
    segments: Tuple[Segment, ...]
    layers: Tuple[Tuple[int, int], ...]
    name: str
    is_stitch: bool = True

    @property
    def first_anchor(self):
        return self.segments[0].anchor

    @property
    def last_anchor(self):
        return self.segments[-1].anchor


@dataclass(frozen=True)
class LayerFit:
    """What a stitching layer is fitted to by least squares: the output of
    ``source_block`` of anchor ``front`` should map to the output of
    ``target_block`` of the other anchor (the block just before the one the
    route resumes at)."""
    front: int
    layer: int
    source_block: int
    target_block: int


class StitchingSpace:
    """All routes through a pair of anchors, and their stitching layers.

    Args:
        depths (Sequence[int]): Block counts ``(d0, d1)`` of anchor 0 (the
            small one) and anchor 1, with ``1 <= d0 <= d1``.
        mode (str): ``'v2'`` (two-way stitching: SL, LS, LSL, SLS) or
            ``'v1'`` (SL only, as SN-Net v1; the ids keep their v2 meaning:
            0, 1 and the SL ids). Defaults to ``'v2'``.
        anchor_names (Sequence[str]): Short names used in route names.
            Defaults to ``('S', 'L')``.

    Example:
        >>> space = StitchingSpace((12, 24))
        >>> len(space.stitch_ids), space.unused_ids
        (134, (13,))
        >>> space[25].name
        'L[0-1]→S[1-1]→L[4-23]'
    """

    def __init__(self, depths: Sequence[int], mode: str = 'v2',
                 anchor_names: Sequence[str] = ('S', 'L')):
        if len(depths) != 2:
            raise ValueError(f'SN-Netv2 stitches two anchors; got depths '
                             f'{tuple(depths)}.')
        d0, d1 = (int(d) for d in depths)
        if not 1 <= d0 <= d1:
            raise ValueError(
                f'depths must be (small, large) with 1 <= small <= large, got '
                f'{tuple(depths)}; put the shallower anchor first.')
        if mode not in ('v1', 'v2'):
            raise ValueError(f"mode must be 'v1' or 'v2', got {mode!r}.")
        self.depths = (d0, d1)
        self.mode = mode
        self.anchor_names = tuple(anchor_names)
        self.routes: Dict[int, Route] = {}
        self._build()
        kinds = ('anchor', 'SL') if mode == 'v1' else KINDS
        self.stitch_ids: Tuple[int, ...] = tuple(
            r.id for r in self.routes.values()
            if r.is_stitch and r.kind in kinds)
        self.unused_ids: Tuple[int, ...] = tuple(
            r.id for r in self.routes.values()
            if not r.is_stitch and r.kind in kinds)
        self._valid = frozenset(self.stitch_ids)

    # ------------------------------------------------------------ mapping
    def small_block_of(self, large_block: int) -> int:
        """``m(j)``: the small block a large block corresponds to."""
        d0, d1 = self.depths
        return large_block * d0 // d1

    def resume_block(self, small_block: int) -> int:
        """``e(i)``: where the large model resumes after small block i."""
        d0, d1 = self.depths
        return math.ceil((small_block + 1) * d1 / d0)

    def small_out_indices(self, large_out_indices: Sequence[int]):
        """The small-anchor blocks whose features stand in for the given
        large-anchor output blocks in dense prediction."""
        return [self.small_block_of(j) for j in large_out_indices]

    @property
    def num_layers(self) -> Dict[int, int]:
        """Stitching layers per front anchor: {0: #S->L, 1: #L->S}."""
        return {SMALL: self.depths[0], LARGE: self.depths[0] - 1}

    # ---------------------------------------------------------- building
    def _ls_cuts(self) -> List[int]:
        d1 = self.depths[1]
        return [
            j for j in range(d1 - 1)
            if self.small_block_of(j + 1) != self.small_block_of(j)
        ]

    def _name(self, segments):
        return '→'.join(f'{self.anchor_names[s.anchor]}[{s.first}-{s.last}]'
                        for s in segments)

    def _add(self, kind, segments, layers, is_stitch=True):
        segments = tuple(segments)
        route = Route(len(self.routes), kind, segments, tuple(layers),
                      self._name(segments), is_stitch)
        self.routes[route.id] = route

    def _build(self):
        d0, d1 = self.depths
        self._add('anchor', [Segment(SMALL, 0, d0 - 1)], [])
        self._add('anchor', [Segment(LARGE, 0, d1 - 1)], [])
        for i in range(d0):
            e = self.resume_block(i)
            segments = [Segment(SMALL, 0, i)]
            if e < d1:
                segments.append(Segment(LARGE, e, d1 - 1))
            self._add('SL', segments, [(SMALL, i)], is_stitch=e < d1)
        ls_cuts = self._ls_cuts()
        for j in ls_cuts:
            k = self.small_block_of(j)
            self._add('LS', [Segment(LARGE, 0, j), Segment(SMALL, k + 1,
                                                           d0 - 1)],
                      [(LARGE, k)])
        for j in ls_cuts:
            k = self.small_block_of(j)
            for i in range(k + 1, d0 - 1):
                self._add('LSL', [
                    Segment(LARGE, 0, j),
                    Segment(SMALL, k + 1, i),
                    Segment(LARGE, self.resume_block(i), d1 - 1)
                ], [(LARGE, k), (SMALL, i)])
        for i in range(d0):
            e = self.resume_block(i)
            for j in ls_cuts:
                if j < e:
                    continue
                k = self.small_block_of(j)
                self._add('SLS', [
                    Segment(SMALL, 0, i),
                    Segment(LARGE, e, j),
                    Segment(SMALL, k + 1, d0 - 1)
                ], [(SMALL, i), (LARGE, k)])

    # ------------------------------------------------------------ queries
    def __len__(self):
        return len(self.stitch_ids)

    def __iter__(self):
        return (self.routes[i] for i in self.stitch_ids)

    def __getitem__(self, stitch_id: int) -> Route:
        return self.routes[self.check_id(stitch_id)]

    def check_id(self, stitch_id) -> int:
        """Return ``stitch_id`` as an int if it is a stitch of this space,
        else raise a ValueError that names the valid ids."""
        value = _as_int(stitch_id)
        if value is None or value not in self._valid:
            unused = (f' (id {value} runs no block of the second anchor and '
                      'is not a stitch)' if value in self.unused_ids else '')
            raise ValueError(
                f'Unknown stitch id {stitch_id!r} for this {self.mode} space '
                f'of depths {self.depths}{unused}: valid ids are '
                f'{_ranges(self.stitch_ids)}.')
        return value

    def ids_of_kind(self, kind: str) -> List[int]:
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {kind!r}.')
        return [r.id for r in self if r.kind == kind]

    def layer_fits(self) -> List[LayerFit]:
        """The least-squares fitting target of every stitching layer, from
        the two-segment routes (LSL and SLS reuse those layers)."""
        fits = []
        for route in self.routes.values():
            if route.kind not in ('SL', 'LS'):
                continue
            front, layer = route.layers[0]
            if route.kind == 'SL':
                # Also the non-stitch SL entry: its layer maps the last small
                # feature to the large width for dense outputs.
                target = self.resume_block(layer) - 1
            else:
                target = layer
            fits.append(
                LayerFit(front, layer, route.segments[0].last, target))
        return fits

    def describe(self, stitch_id: int) -> str:
        return self[stitch_id].name

    def table(self) -> List[Tuple[int, str, str]]:
        """(id, kind, name) for every stitch."""
        return [(r.id, r.kind, r.name) for r in self]


def _as_int(value) -> Optional[int]:
    """An int from an int-like id (numpy ints, '12'), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _ranges(ids: Sequence[int]) -> str:
    """Compact form of sorted ids: ``0-12, 14-134``."""
    parts: List[str] = []
    start: Optional[int] = None
    previous: Optional[int] = None
    for value in list(ids) + [None]:
        if start is None:
            start = previous = value
        elif value is not None and value == previous + 1:
            previous = value
        else:
            parts.append(str(start) if start == previous else
                         f'{start}-{previous}')
            start = previous = value
    return ', '.join(parts)
