"""Choose the stitch to deploy under a FLOPs and/or latency budget.

:func:`select_stitch` is a pure function of a per-stitch table (the one
:func:`~flexvit_mm.analysis.stitch_table.compute_stitch_table` makes) and,
optionally, the per-stitch results of an earlier evaluation (the rows of a
``stitches.json`` written by ``tools/test.py --stitch-id``):

1. **Fit.** A stitch fits when its FLOPs are ``<=`` the FLOPs budget and/or
   its measured latency is ``<=`` the latency budget (both, when both are
   given).
2. **Best by results.** Among the stitches that fit *and have a result*,
   the one with the best value of the primary metric (the metric
   ``tools/test.py`` plots, :func:`~flexvit_mm.engine.stitch_sweep.
   choose_primary_metric`; lower is better for rmse, abs_rel, ...). A
   stitch without a result never wins over one with a result: an
   unevaluated stitch is not assumed to be good.
3. **Otherwise most FLOPs.** Without results (none given, none for the
   stitches that fit, or no scalar metric in them), the stitch with the
   most FLOPs that fits: within a stitched family more compute means more
   accuracy, on average.
4. **Ties.** Equal metric values: fewer FLOPs, then lower latency, then the
   lower id. Equal FLOPs under rule 3: the lower id (a measured latency is
   noise-prone and would make the choice change from run to run).

A budget that no stitch fits raises :class:`BudgetError` (a ValueError)
naming the smallest stitch and the budget.
"""
import json
import math
import numbers
import os.path as osp
import re
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Union

from ..errors import FlexvitError

__all__ = [
    'BudgetError', 'Selection', 'parse_flops_budget', 'parse_latency_budget',
    'select_stitch', 'select_stitch_for_model', 'load_stitch_results',
    'load_stitch_table', 'describe_budget'
]

# Columns of a stitches.json row that are not metrics.
_REPORT_COLUMNS = frozenset({
    'id', 'route', 'kind', 'gflops', 'flops', 'params', 'pareto',
    'latency_ms', 'latency_spread'
})

_NUMBER = r'(\d+(?:\.\d*)?|\.\d+)(e[+-]?\d+)?'
_FLOPS_RE = re.compile(
    r'^\s*' + _NUMBER + r'\s*([kmgt]?)\s*(?:flops?|macs?)?\s*$', re.I)
_LATENCY_RE = re.compile(r'^\s*' + _NUMBER + r'\s*(ms|s|us|\u00b5s|\u03bcs)'
                         r'?\s*$', re.I)
_FLOPS_UNITS = {'': 1.0, 'k': 1e3, 'm': 1e6, 'g': 1e9, 't': 1e12}
_LATENCY_UNITS = {'ms': 1.0, 's': 1e3, 'us': 1e-3, '\u00b5s': 1e-3,
                  '\u03bcs': 1e-3}


class BudgetError(FlexvitError, ValueError):
    """No stitch fits the budget; the message names the smallest stitch
    and the budget.

    Attributes:
        smallest (dict): The smallest stitch: ``id``, ``route``, ``flops``,
            ``latency_ms``.
        budget (dict): ``flops`` (count) and ``latency_ms``; None where not
            given.
    """

    def __init__(self, message: str, smallest: dict, budget: dict):
        super().__init__(message)
        self.smallest = smallest
        self.budget = budget


@dataclass
class Selection:
    """The stitch :func:`select_stitch` chose, and why.

    Attributes:
        id (int): The stitch id.
        reason (str): Which rule chose it, in words.
        rule (str): ``'metric'`` (best result) or ``'most-flops'``.
        gflops (float | None): Its GFLOPs (per image).
        latency_ms (float | None): Its measured latency, when known.
        metric (str | None): The metric compared (rule ``'metric'``).
        metric_value (float | None): Its value of that metric.
        candidates (int): How many stitches fit the budget.
        route (str | None): Its route, when known.
    """
    id: int
    reason: str
    rule: str
    gflops: Optional[float]
    latency_ms: Optional[float]
    metric: Optional[str]
    metric_value: Optional[float]
    candidates: int
    route: Optional[str] = None

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ parsing
def _plain_number(value) -> Optional[float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def _positive(value: float, what: str, given) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f'{what} must be a positive, finite number, got '
                         f'{given!r}.')
    return value


def parse_flops_budget(value: Union[str, float, int]) -> float:
    """A FLOPs budget as a count of FLOPs (multiply-accumulates, fvcore's
    convention, as every table of this package).

    Args:
        value (str | float | int): ``'40G'``, ``'40 GFLOPs'``, ``'400M'``,
            ``'1.5T'``, ``'40e9'`` (a count), or a number (a count). The
            unit letters K, M, G, T are read case-insensitively (``m`` is
            mega); ``FLOPs``/``MACs`` may follow.

    Returns:
        float: FLOPs.

    Raises:
        ValueError: Unreadable, not positive, or a plain number below 1e6
            (``'40'`` is 40 FLOPs, surely meant as ``'40G'``).
    """
    number = _plain_number(value)
    if number is None:
        match = _FLOPS_RE.match(str(value)) if isinstance(value, str) \
            else None
        if match is None:
            raise ValueError(
                f'Cannot read the FLOPs budget {value!r}: give a number with '
                "a unit, e.g. '40G', '400M', '1.5T' (or a count: '40e9').")
        number = float(match.group(1) + (match.group(2) or ''))
        unit = match.group(3).lower()
        number *= _FLOPS_UNITS[unit]
    else:
        unit = ''
    _positive(number, 'The FLOPs budget', value)
    if not unit and number < 1e6:
        raise ValueError(
            f'The FLOPs budget {value!r} has no unit and means {number:g} '
            f"FLOPs, less than any network; did you mean '{value}G'? Give "
            "a unit: '40G', '400M', '1.5T'.")
    return number


def parse_latency_budget(value: Union[str, float, int]) -> float:
    """A latency budget in milliseconds.

    Args:
        value (str | float | int): ``'25ms'``, ``'0.025s'``, ``'25000us'``
            (also ``µs``), or a number (milliseconds).

    Returns:
        float: Milliseconds.

    Raises:
        ValueError: Unreadable, not positive, or a string without a unit.
    """
    number = _plain_number(value)
    if number is None:
        match = _LATENCY_RE.match(str(value)) if isinstance(value, str) \
            else None
        if match is None:
            raise ValueError(
                f'Cannot read the latency budget {value!r}: give a number '
                "with a unit, e.g. '25ms', '0.025s' or '25000us'.")
        if not match.group(3):
            raise ValueError(
                f'The latency budget {value!r} has no unit; give one: '
                f"'{value}ms', '{value}s' or '{value}us'.")
        number = float(match.group(1) + (match.group(2) or '')) * \
            _LATENCY_UNITS[match.group(3).lower()]
    return _positive(number, 'The latency budget', value)


# ----------------------------------------------------------------- helpers
def _scalar(value) -> Optional[float]:
    """A finite float from a report value (the sweep report's reader), else
    None."""
    # Imported here, as below: this module imports nothing heavy at load.
    from ..engine.stitch_sweep import report_scalar
    value = report_scalar(value)
    return value if value is not None and math.isfinite(value) else None


def _as_id(key) -> int:
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    raise ValueError(f'Stitch id {key!r} in the table is not an integer.')


def _gflops_text(flops: Optional[float]) -> str:
    return '? GFLOPs' if flops is None else f'{flops / 1e9:.4g} GFLOPs'


def _ms_text(ms: Optional[float]) -> str:
    return '? ms' if ms is None else f'{ms:.4g} ms'


def describe_budget(flops_budget: Optional[float] = None,
                    latency_budget: Optional[float] = None) -> str:
    """``'FLOPs <= 40 GFLOPs and latency <= 25 ms'`` (parsed budgets:
    FLOPs count, milliseconds)."""
    parts = []
    if flops_budget is not None:
        parts.append(f'FLOPs <= {_gflops_text(flops_budget)}')
    if latency_budget is not None:
        parts.append(f'latency <= {_ms_text(latency_budget)}')
    return ' and '.join(parts)


def _normalise_table(table) -> Dict[int, dict]:
    """``{id: dict(flops, latency_ms, route)}`` from a stitch table
    (``{id: dict(flops=...)}``, keys int or str) or a list of rows with
    ``id`` and ``flops`` or ``gflops`` (e.g. a stitches.json)."""
    if isinstance(table, dict):
        items = list(table.items())
    elif isinstance(table, (list, tuple)):
        try:
            items = [(row['id'], row) for row in table]
        except (TypeError, KeyError):
            raise ValueError('A table given as a list needs rows with an '
                             '"id" (like stitches.json).')
    else:
        raise ValueError(f'The stitch table must be a dict {{id: row}} or a '
                         f'list of rows, got {type(table).__name__}.')
    rows = {}
    for key, row in items:
        stitch_id = _as_id(key)
        if not isinstance(row, dict):
            row = dict(flops=row)
        flops = _scalar(row.get('flops'))
        if flops is None and _scalar(row.get('gflops')) is not None:
            flops = _scalar(row['gflops']) * 1e9
        if flops is None:
            raise ValueError(
                f'Stitch {stitch_id} has no FLOPs in the table (a "flops" '
                'count or "gflops"); compute the table with '
                'compute_stitch_table.')
        route = row.get('route')
        rows[stitch_id] = dict(flops=flops,
                               latency_ms=_scalar(row.get('latency_ms')),
                               route=str(route) if route else None)
    if not rows:
        raise ValueError('The stitch table is empty.')
    return rows


def _normalise_results(results) -> Dict[int, dict]:
    """``{id: row}`` from stitches.json rows or ``{id: metrics}``."""
    if isinstance(results, dict):
        return {_as_id(k): dict(v or {}) for k, v in results.items()}
    if isinstance(results, (list, tuple)):
        out = {}
        for row in results:
            if not isinstance(row, dict) or 'id' not in row:
                raise ValueError('Results must be the rows of a '
                                 'stitches.json (dicts with an "id").')
            out[_as_id(row['id'])] = row
        return out
    raise ValueError(f'Results must be stitches.json rows or {{id: '
                     f'metrics}}, got {type(results).__name__}.')


def _metric_of(results: Dict[int, dict], metric: Optional[str]):
    """The metric to compare and whether lower is better; None when the
    results hold no scalar metric."""
    from ..engine.stitch_sweep import choose_primary_metric, lower_is_better
    names = []
    for row in results.values():
        for name, value in row.items():
            if (name not in _REPORT_COLUMNS and name not in names
                    and _scalar(value) is not None):
                names.append(name)
    if metric is not None:
        if metric not in names:
            raise ValueError(f'metric {metric!r} is not in the results; '
                             f'they hold {names or "no scalar metric"}.')
        return metric, lower_is_better(metric)
    if not names:
        return None, False
    chosen = choose_primary_metric(names)
    return chosen, lower_is_better(chosen)


def _smallest(rows: Dict[int, dict], by_latency: bool) -> int:
    inf = math.inf

    def key(i):
        r = rows[i]
        lat = r['latency_ms'] if r['latency_ms'] is not None else inf
        return (lat, r['flops'], i) if by_latency else (r['flops'], lat, i)

    return min(rows, key=key)


def _stitch_text(stitch_id: int, row: dict, latency: bool) -> str:
    text = f'stitch {stitch_id}'
    if row.get('route'):
        text += f' ({row["route"]})'
    text += f' with {_gflops_text(row["flops"])}'
    if latency or row.get('latency_ms') is not None:
        text += f', {_ms_text(row["latency_ms"])}'
    return text


def _no_fit(rows, flops_budget, latency_budget) -> BudgetError:
    smallest = _smallest(rows, by_latency=flops_budget is None)
    row = rows[smallest]
    use_latency = latency_budget is not None
    budget = describe_budget(flops_budget, latency_budget)
    message = (f'No stitch fits the budget {budget} ({len(rows)} '
               'stitches): the smallest is '
               f'{_stitch_text(smallest, row, use_latency)}.')
    if flops_budget is not None and latency_budget is not None:
        fastest = _smallest(rows, by_latency=True)
        if fastest != smallest:
            message += (' The fastest is '
                        f'{_stitch_text(fastest, rows[fastest], True)}.')
    needs = []
    if flops_budget is not None and row['flops'] > flops_budget:
        needs.append('a FLOPs budget of at least '
                     f'{_gflops_text(row["flops"])}')
    if latency_budget is not None and row['latency_ms'] is not None and \
            row['latency_ms'] > latency_budget:
        needs.append('a latency budget of at least '
                     f'{_ms_text(row["latency_ms"])}')
    if needs:
        message += f' It needs {" and ".join(needs)}.'
    return BudgetError(
        message,
        smallest=dict(id=smallest, route=row['route'], flops=row['flops'],
                      latency_ms=row['latency_ms']),
        budget=dict(flops=flops_budget, latency_ms=latency_budget))


# ---------------------------------------------------------------- choosing
def select_stitch(table,
                  flops_budget=None,
                  latency_budget=None,
                  results=None,
                  metric: Optional[str] = None) -> Selection:
    """Choose the stitch to run under a budget (the rules are in the module
    docstring).

    Args:
        table (dict | list): Per-stitch cost: ``{id: dict(flops=count,
            latency_ms=..., route=...)}`` as :func:`compute_stitch_table`
            returns (``latency_ms`` with ``latency=True``); ``gflops``
            instead of ``flops`` is read too, and so is a list of rows with
            ``id`` (a stitches.json). Only these stitches are candidates.
        flops_budget (str | float, optional): :func:`parse_flops_budget`.
        latency_budget (str | float, optional): :func:`parse_latency_budget`
            (a number is milliseconds). Every stitch of the table needs a
            ``latency_ms`` then.
        results (list | dict, optional): Earlier per-stitch results: the
            rows of a stitches.json, or ``{id: metrics}``.
        metric (str, optional): The metric to compare; default the primary
            metric of the results (mIoU, accuracy/top1, coco/bbox_mAP, rmse,
            d1, ... as the sweep report chooses it).

    Returns:
        Selection: The chosen stitch and the reason.

    Raises:
        BudgetError: No stitch fits.
        ValueError: No budget, an unreadable budget or table, a latency
            budget with stitches whose latency is unknown, or an unknown
            ``metric``.
    """
    flops_b = None if flops_budget is None else \
        parse_flops_budget(flops_budget)
    latency_b = None if latency_budget is None else \
        parse_latency_budget(latency_budget)
    if flops_b is None and latency_b is None:
        raise ValueError('Give a FLOPs budget, a latency budget, or both.')
    rows = _normalise_table(table)
    if latency_b is not None:
        unknown = sorted(i for i, r in rows.items() if r['latency_ms'] is None)
        if unknown:
            raise ValueError(
                f'A latency budget needs the latency of every stitch; it is '
                f'unknown for {unknown}. Measure it with '
                'compute_stitch_table(..., latency=True) or '
                'tools/analysis/get_flops.py.')

    def fits(row):
        # Relative slack: FLOPs read back from GFLOPs carry rounding.
        if flops_b is not None and row['flops'] > flops_b * (1 + 1e-9):
            return False
        if latency_b is not None and row['latency_ms'] > latency_b:
            return False
        return True

    fitting = sorted(i for i, r in rows.items() if fits(r))
    if not fitting:
        raise _no_fit(rows, flops_b, latency_b)
    budget = describe_budget(flops_b, latency_b)
    inf = math.inf

    metric_name, lower = None, False
    scored = {}
    no_result_why = 'no results given'
    if results is not None:
        by_id = _normalise_results(results)
        metric_name, lower = _metric_of(by_id, metric)
        if metric_name is None:
            no_result_why = 'the results hold no scalar metric'
        else:
            for i in fitting:
                value = _scalar(by_id.get(i, {}).get(metric_name))
                if value is not None:
                    scored[i] = value
            if not scored:
                no_result_why = (f'no {metric_name} result for any of the '
                                 f'{len(fitting)} stitches within the budget')

    if scored:
        sign = 1.0 if lower else -1.0

        def key(i):
            r = rows[i]
            lat = r['latency_ms'] if r['latency_ms'] is not None else inf
            return (sign * scored[i], r['flops'], lat, i)

        chosen = min(scored, key=key)
        value = scored[chosen]
        reason = (f'best {metric_name} ({"lower" if lower else "higher"} is '
                  f'better) among the {len(scored)} evaluated stitches within'
                  f' the budget {budget}: {value:.4g}')
        tied = sorted(i for i in scored if i != chosen and scored[i] == value)
        if tied:
            reason += (f'; tied with stitch{"es" if len(tied) > 1 else ""} '
                       f'{", ".join(map(str, tied))}: the one with fewer '
                       'FLOPs (then lower latency, then lower id) is taken')
        missing = [i for i in fitting if i not in scored]
        if missing:
            plural = len(missing) > 1
            reason += (f'; {len(missing)} stitch{"es" if plural else ""} '
                       f'within the budget without a result '
                       f'({", ".join(map(str, missing))}) '
                       f'{"were" if plural else "was"} not considered')
        rule = 'metric'
    else:
        chosen = min(fitting, key=lambda i: (-rows[i]['flops'], i))
        value = None
        reason = (f'{no_result_why}: the stitch with the most FLOPs within '
                  f'the budget {budget} ({len(fitting)} of {len(rows)} '
                  'stitches fit)')
        tied = [i for i in fitting
                if i != chosen and rows[i]['flops'] == rows[chosen]['flops']]
        if tied:
            reason += (f'; equal FLOPs with {", ".join(map(str, tied))}: the '
                       'lower id is taken')
        rule = 'most-flops'
        metric_name = None
    row = rows[chosen]
    return Selection(id=chosen, reason=reason, rule=rule,
                     gflops=row['flops'] / 1e9, latency_ms=row['latency_ms'],
                     metric=metric_name, metric_value=value,
                     candidates=len(fitting), route=row['route'])


# ------------------------------------------------------------------- files
def load_stitch_results(source, backbone=None) -> List[dict]:
    """The rows of a stitches.json (``tools/test.py --stitch-id``).

    Args:
        source (str | list): Its path, or its rows.
        backbone (SNNetv2, optional): When given, the rows' routes must be
            this backbone's: a report of another stitched pair is refused.

    Returns:
        list[dict]: The rows.

    Raises:
        ValueError: Not a stitches.json, or one of another stitched pair.
    """
    name = 'the results'
    rows = source
    if isinstance(source, str):
        name = source
        if not osp.isfile(source):
            raise ValueError(f'{source} does not exist.')
        try:
            with open(source) as f:
                rows = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'{source} is not valid JSON: {error}')
    if not isinstance(rows, list) or not all(
            isinstance(r, dict) and 'id' in r for r in rows):
        raise ValueError(
            f'{name} is not a stitches.json (a list of rows with "id", as '
            'tools/test.py --stitch-id writes).')
    if backbone is not None:
        space = backbone.space
        for row in rows:
            stitch_id = _as_id(row['id'])
            route = row.get('route')
            if stitch_id not in backbone.stitch_ids:
                raise ValueError(
                    f'{name} has stitch {stitch_id}, which this backbone '
                    'does not have: it was written for another stitched '
                    'pair.')
            if route and route != space[stitch_id].name:
                raise ValueError(
                    f'{name} was written for another stitched pair: stitch '
                    f'{stitch_id} is {route} there, {space[stitch_id].name} '
                    'here.')
    return rows


def load_stitch_table(path: str,
                      backbone=None,
                      input_shape: Optional[Sequence[int]] = None):
    """Read a per-stitch table file: the ``stitch_table.json`` of
    ``tools/analysis/get_flops.py`` (with latency) or the sampler's
    ``stitch_flops_HxW.json`` cache.

    Args:
        path (str): The file.
        backbone (SNNetv2, optional): When given, the file's key must be
            :func:`stitch_table_key` of this backbone (at ``input_shape``,
            default the file's own input size).
        input_shape (Sequence[int], optional): The input size the table
            must have been made at.

    Returns:
        tuple[dict, dict]: ``{id: row}`` and the whole file (``key``,
        ``latency`` protocol, ...).

    Raises:
        ValueError: Missing or unreadable file, a table of a model without
            a stitched backbone, or one of another pair or input size.
    """
    from .stitch_table import stitch_table_key
    if not osp.isfile(path):
        raise ValueError(f'{path} does not exist.')
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f'{path} is not valid JSON: {error}')
    if not isinstance(data, dict) or not isinstance(data.get('table'), dict):
        raise ValueError(f'{path} is not a stitch table (a JSON object with '
                         '"table", as tools/analysis/get_flops.py writes).')
    if data.get('stitched') is False or not data.get('key'):
        raise ValueError(f'{path} is the table of a model without a stitched '
                         'backbone; there is no stitch to choose.')
    if backbone is not None:
        key = data['key']
        shape = list(input_shape) if input_shape is not None else \
            key.get('input_shape')
        expected = stitch_table_key(backbone, shape)
        differences = [
            f'{name}: file {key.get(name)}, model {value}'
            for name, value in expected.items() if key.get(name) != value
        ]
        if differences:
            raise ValueError(
                f'{path} was made for another model or input size ('
                + '; '.join(differences) + '). Make it again with '
                'tools/analysis/get_flops.py for this config'
                + (f' and --shape {shape[0]} {shape[1]}' if shape else '')
                + '.')
    table = {_as_id(k): v for k, v in data['table'].items()}
    return table, data


def select_stitch_for_model(model,
                            flops_budget=None,
                            latency_budget=None,
                            stitches_json=None,
                            input_shape: Optional[Sequence[int]] = None,
                            metric: Optional[str] = None,
                            *,
                            table=None,
                            apply: bool = True,
                            batch_size: int = 1,
                            threads: Optional[int] = None,
                            warmup: Optional[int] = None,
                            repeats: Optional[int] = None,
                            progress: bool = False) -> Selection:
    """Choose (and set) the stitch of a built model under a budget.

    The per-stitch table is computed with :func:`compute_stitch_table` --
    FLOPs, and the latency on the model's current device when a latency
    budget is given -- unless ``table`` is passed; then
    :func:`select_stitch` decides.

    Args:
        model: A built model with a stitched backbone (classifier,
            segmentor, detector, wrapped or not) or the backbone itself.
        flops_budget, latency_budget: See :func:`select_stitch`.
        stitches_json (str | list, optional): An earlier stitches.json (path
            or rows) of this model: the best result within the budget wins.
            Without it, the stitch with the most FLOPs that fits.
        input_shape (Sequence[int], optional): (H, W) for FLOPs and
            latency; default the first anchor's ``img_size`` (what
            StitchSamplingHook counts at without an ``input_shape``).
        metric (str, optional): The metric of ``stitches_json`` to compare.
        table (dict, optional): A precomputed table (e.g. the ``table`` of
            :func:`load_stitch_table`), to skip the counting.
        apply (bool): Set the chosen stitch on the model. Defaults to True.
        batch_size, threads, warmup, repeats: The latency protocol
            (:func:`~flexvit_mm.analysis.stitch_table.latency_protocol`).
        progress (bool): Show progress bars. Defaults to False.

    Returns:
        Selection: The chosen stitch and the reason.
    """
    from ..models.stitching.selection import find_stitched_backbone, set_stitch
    from .stitch_table import (LATENCY_REPEATS, LATENCY_WARMUP,
                               compute_stitch_table)
    backbone = find_stitched_backbone(model)
    shape = tuple(input_shape) if input_shape is not None else tuple(
        backbone.anchors[0].patch_embed.img_size)
    results = None
    if stitches_json is not None:
        results = load_stitch_results(stitches_json, backbone)
    if table is None:
        table = compute_stitch_table(
            backbone, shape, latency=latency_budget is not None,
            batch_size=batch_size, threads=threads,
            warmup=LATENCY_WARMUP if warmup is None else warmup,
            repeats=LATENCY_REPEATS if repeats is None else repeats,
            progress=progress)
    table = {
        _as_id(i): dict(row, route=row.get('route')
                        or backbone.space[_as_id(i)].name)
        for i, row in table.items()
    }
    selection = select_stitch(table, flops_budget, latency_budget, results,
                              metric)
    if apply:
        set_stitch(model, selection.id)
    return selection
