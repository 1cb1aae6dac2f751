"""Choosing a stitch under a FLOPs / latency budget: the pure rules on a
hand-written table and stitches.json, the model helper on the tiny stitched
classifier, and tools/test.py --flops-budget end to end."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from flexvit_mm.analysis import (BudgetError, compute_stitch_table,
                                 load_stitch_results, parse_flops_budget,
                                 parse_latency_budget, select_stitch,
                                 select_stitch_for_model)
from flexvit_mm.cli import get_flops, run
from flexvit_mm.cli.common import UserInputError
from flexvit_mm.cli.test import (build_test_config, choose_under_budget,
                                 parse_args)
from flexvit_mm.cli.test import main as tools_test_main

from .conftest import CONFIGS, data_root_options, run_tool

CONFIG = osp.join(CONFIGS, 'cls_snnetv2_tiny.py')

# An S-L-like family: FLOPs levels with a tie at 14.2 G (3, 4) and at
# 37.9 G (6, 7); latency roughly follows the FLOPs.
TABLE = {
    0: dict(flops=4.61e9, params=22, latency_ms=5.0, route='S[0-11]'),
    1: dict(flops=61.6e9, params=304, latency_ms=60.0, route='L[0-23]'),
    2: dict(flops=9.4e9, params=30, latency_ms=9.0),
    3: dict(flops=14.2e9, params=40, latency_ms=13.0),
    4: dict(flops=14.2e9, params=41, latency_ms=12.0),
    5: dict(flops=33.1e9, params=90, latency_ms=30.0),
    6: dict(flops=37.9e9, params=100, latency_ms=36.0),
    7: dict(flops=37.9e9, params=101, latency_ms=35.0),
}
# A stitches.json of an earlier sweep (stitch 7 was not evaluated).
RESULTS = [
    dict(id=0, route='S[0-11]', kind='anchor', gflops=4.61, params=22,
         pareto=True, **{'accuracy/top1': 79.0, 'accuracy/top5': 94.0}),
    dict(id=1, route='L[0-23]', kind='anchor', gflops=61.6, params=304,
         pareto=True, **{'accuracy/top1': 85.0, 'accuracy/top5': 97.0}),
    dict(id=2, **{'accuracy/top1': 80.1}),
    dict(id=3, **{'accuracy/top1': 81.0}),
    dict(id=4, **{'accuracy/top1': 81.0}),
    dict(id=5, **{'accuracy/top1': 82.5}),
    dict(id=6, **{'accuracy/top1': 82.0}),
]


def test_best_metric_under_a_flops_budget(tmp_path):
    path = tmp_path / 'stitches.json'
    path.write_text(json.dumps(RESULTS))
    chosen = select_stitch(TABLE, '40G', results=load_stitch_results(
        str(path)))
    assert chosen.id == 5 and chosen.rule == 'metric'
    assert chosen.metric == 'accuracy/top1' and chosen.metric_value == 82.5
    assert chosen.candidates == 7 and chosen.gflops == pytest.approx(33.1)
    assert 'best accuracy/top1 (higher is better)' in chosen.reason
    # 7 fits but has no result: it cannot win, and the reason says so.
    assert 'without a result (7) was not considered' in chosen.reason
    # Same choice from {id: metrics}; the whole family fits 70G -> 1.
    assert select_stitch(TABLE, 40e9, results={
        r['id']: r for r in RESULTS}).id == 5
    assert select_stitch(TABLE, '70G', results=RESULTS).id == 1


def test_lower_is_better_metric():
    rmse = {0: 0.60, 2: 0.50, 3: 0.45, 5: 0.40, 6: 0.41, 1: 0.30}
    rows = [dict(id=i, rmse=v, d1=1 - v) for i, v in rmse.items()]
    chosen = select_stitch(TABLE, '35G', results=rows)
    assert (chosen.id, chosen.metric) == (5, 'rmse')
    assert 'lower is better' in chosen.reason
    # Another metric by name, higher is better.
    assert select_stitch(TABLE, '35G', results=rows, metric='d1').id == 5
    with pytest.raises(ValueError, match='not in the results'):
        select_stitch(TABLE, '35G', results=rows, metric='mIoU')


def test_ties_on_the_metric():
    # 3 and 4: same metric, same FLOPs -> the faster one (4).
    chosen = select_stitch(TABLE, '15G', results=RESULTS)
    assert chosen.id == 4 and 'tied with stitch 3' in chosen.reason
    # Same metric, different FLOPs -> the cheaper one.
    results = {2: {'accuracy/top1': 80.0}, 3: {'accuracy/top1': 80.0}}
    assert select_stitch(TABLE, '15G', results=results).id == 2
    # Same metric, FLOPs and latency -> the lower id.
    table = {9: dict(flops=1e9, latency_ms=1.0),
             8: dict(flops=1e9, latency_ms=1.0)}
    results = {8: {'mIoU': 40.0}, 9: {'mIoU': 40.0}}
    assert select_stitch(table, '1G', results=results).id == 8


def test_most_flops_without_results_and_flops_ties():
    chosen = select_stitch(TABLE, '40G')
    # 6 and 7 both have 37.9 G: the lower id, not the faster one.
    assert chosen.id == 6 and chosen.rule == 'most-flops'
    assert chosen.metric is None and chosen.metric_value is None
    assert chosen.reason.startswith('no results given: the stitch with the '
                                    'most FLOPs')
    assert 'equal FLOPs with 7: the lower id is taken' in chosen.reason
    # Results, but none for a stitch that fits: most FLOPs, and why.
    only_large = [r for r in RESULTS if r['id'] == 1]
    chosen = select_stitch(TABLE, '40G', results=only_large)
    assert chosen.id == 6 and chosen.rule == 'most-flops'
    assert 'no accuracy/top1 result for any of the 7 stitches' in \
        chosen.reason
    # Results without any scalar metric.
    chosen = select_stitch(TABLE, '40G', results=[dict(id=5, route='x')])
    assert chosen.id == 6 and 'hold no scalar metric' in chosen.reason


def test_latency_budget_and_both_budgets():
    # 3 (13 ms) is out at 12.5 ms; 4 has the same FLOPs and fits.
    assert select_stitch(TABLE, latency_budget='0.0125s').id == 4
    chosen = select_stitch(TABLE, latency_budget=31.0)  # a number is ms
    assert (chosen.id, chosen.latency_ms, chosen.candidates) == (5, 30.0, 5)
    # Both: 6 (36 ms) is out, 7 (35 ms) fits 40G and 35.5 ms.
    assert select_stitch(TABLE, '40G', '35.5ms').id == 7
    assert select_stitch(TABLE, '40G', '35500us', results=RESULTS).id == 5
    # A latency budget needs every stitch's latency.
    table = dict(TABLE)
    table[8] = dict(flops=1e9)
    with pytest.raises(ValueError, match=r'unknown for \[8\]'):
        select_stitch(table, latency_budget='25ms')
    with pytest.raises(ValueError, match='Give a FLOPs budget'):
        select_stitch(TABLE)


def test_impossible_budget_names_the_smallest_stitch():
    with pytest.raises(BudgetError) as info:
        select_stitch(TABLE, '1G', results=RESULTS)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert 'stitch 0 (S[0-11]) with 4.61 GFLOPs' in message
    assert 'FLOPs <= 1 GFLOPs' in message
    assert info.value.smallest['id'] == 0
    with pytest.raises(BudgetError, match=r'stitch 0 \(S\[0-11\]\) with '
                       r'4.61 GFLOPs, 5 ms.*latency budget of at least 5 ms'):
        select_stitch(TABLE, latency_budget='2ms')
    # A table read from a stitches.json (gflops, routes) works too.
    with pytest.raises(BudgetError, match='stitch 0'):
        select_stitch(RESULTS[:2], '4G')


@pytest.mark.parametrize('text, flops', [
    ('40G', 40e9), ('40e9', 40e9), ('400M', 400e6), ('1.5T', 1.5e12),
    ('40 GFLOPs', 40e9), ('2.5g', 2.5e9), (3e9, 3e9)])
def test_parse_flops_budget(text, flops):
    assert parse_flops_budget(text) == pytest.approx(flops)


@pytest.mark.parametrize('text, ms', [
    ('25ms', 25.0), ('0.025s', 25.0), ('25000us', 25.0), ('1.5 ms', 1.5),
    (7, 7.0)])
def test_parse_latency_budget(text, ms):
    assert parse_latency_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize('parse, text, message', [
    (parse_flops_budget, '40X', 'Cannot read the FLOPs budget'),
    (parse_flops_budget, '', 'Cannot read the FLOPs budget'),
    (parse_flops_budget, '-5G', 'Cannot read the FLOPs budget'),
    (parse_flops_budget, '0G', 'positive'),
    (parse_flops_budget, '40', "did you mean '40G'"),
    (parse_latency_budget, '25', 'has no unit'),
    (parse_latency_budget, '25min', 'Cannot read the latency budget'),
    (parse_latency_budget, '0ms', 'positive'),
    (parse_latency_budget, None, 'Cannot read the latency budget'),
])
def test_budget_parse_errors(parse, text, message):
    with pytest.raises(ValueError, match=message):
        parse(text)


def _tiny_model():
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def test_select_stitch_for_model_sets_the_stitch():
    model = _tiny_model()
    backbone = model.backbone
    # Tiny FLOPs at 48x48: 0: 3.91M, 3: 6.90M, 5: 6.99M, 8: 7.00M, ...
    chosen = select_stitch_for_model(model, flops_budget='7M')
    assert chosen.id == 8 and backbone.stitch_id == 8
    assert chosen.route == backbone.describe_stitch(8)['route']
    rows = [dict(id=i, route=backbone.space[i].name,
                 **{'accuracy/top1': acc})
            for i, acc in ((0, 10.0), (3, 30.0), (5, 20.0), (1, 90.0))]
    chosen = select_stitch_for_model(model, '7M', stitches_json=rows,
                                     apply=False)
    assert chosen.id == 3 and backbone.stitch_id == 8
    # A latency budget measures the latency now.
    chosen = select_stitch_for_model(model, latency_budget='10s', warmup=0,
                                     repeats=1)
    assert chosen.id == 1 and chosen.latency_ms > 0
    # Results of another stitched pair are refused.
    rows[0]['route'] = 'L[0-23]'
    with pytest.raises(ValueError, match='another stitched pair'):
        select_stitch_for_model(model, '7M', stitches_json=rows)


def test_test_tool_latency_from_get_flops_or_measured_now(tmp_path):
    backbone = _tiny_model().backbone
    flops = compute_stitch_table(backbone, (48, 48), progress=False)
    get_flops.main([CONFIG, '--stitch-ids', '0,1,3', '--warmup', '0',
                    '--repeats', '1', '--out-dir', str(tmp_path)])
    table = str(tmp_path / 'stitch_table.json')
    no_results = (None, 'no --stitches-json')
    args = parse_args([CONFIG, __file__, '--latency-budget', '10s',
                       '--latency-table', table])
    outcome = choose_under_budget(args, backbone, (48, 48), flops,
                                  no_results)
    # Only the measured stitches are candidates; 1 has the most FLOPs.
    assert outcome['selection']['id'] == 1
    assert outcome['selection']['candidates'] == 3
    assert any('choosing among the 3 stitches measured in' in note
               for note in outcome['notes'])
    assert any(f'latency read from {table}' in note
               for note in outcome['notes'])
    # Made at another size: refused.
    with pytest.raises(ValueError, match='another model or input size'):
        choose_under_budget(args, backbone, (64, 64), flops, no_results)
    # Without a table, every stitch is measured now.
    args = parse_args([CONFIG, __file__, '--latency-budget', '10s',
                       '--flops-budget', '7M'])
    outcome = choose_under_budget(args, backbone, (48, 48), flops,
                                  no_results)
    assert outcome['selection']['id'] == 8
    assert outcome['selection']['latency_ms'] > 0
    assert any(note.startswith('latency measured now: every stitch at '
                               '48x48, batch 1') for note in outcome['notes'])


def test_budget_flags_conflicts():
    base = [CONFIG, __file__]  # any existing file stands for the checkpoint
    for extra, message in (
            (['--flops-budget', '7M', '--stitch-id', '3'], 'one or the other'),
            (['--stitches-json', __file__], 'is used with --flops-budget'),
            (['--flops-budget', '7M', '--no-flops'], '--no-flops'),
            (['--flops-budget', '7M', '--out', 'x.pkl'], '--out'),
            (['--flops-budget', '7 apples'], 'Cannot read the FLOPs budget'),
            (['--flops-budget', '7M', '--latency-table', __file__],
             'is used with --latency-budget'),
            (['--latency-budget', '5ms', '--latency-table', 'missing.json'],
             'does not exist')):
        with pytest.raises(UserInputError, match=message):
            build_test_config(parse_args(base + extra))


def test_test_tool_evaluates_the_stitch_a_budget_allows(synthetic, tmp_path):
    model = _tiny_model()
    checkpoint = str(tmp_path / 'tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    # An earlier all-stitch sweep: 3 is the best stitch within 7M FLOPs.
    previous = json.dumps([
        dict(id=i, route=model.backbone.space[i].name,
             **{'accuracy/top1': acc})
        for i, acc in ((0, 10.0), (1, 90.0), (3, 30.0), (5, 20.0))
    ])
    (work_dir / 'stitches.json').write_text(previous)
    options = data_root_options(synthetic('imagenet'))

    proc = run_tool('tools/test.py', CONFIG, checkpoint, '--work-dir',
                    str(work_dir), '--flops-budget', '7M', '--cfg-options',
                    *options)
    log = proc.stdout + proc.stderr
    assert 'Budget --flops-budget 7M at 48x48: stitch 3' in log
    assert 'best accuracy/top1' in log and 'found in the work dir' in log
    assert 'Stitch sweep: 1 stitches (3)' in log
    # The earlier sweep is untouched; this run's report is in its own dir.
    assert (work_dir / 'stitches.json').read_text() == previous
    report, = glob.glob(str(work_dir / '*' / 'stitches.json'))
    with open(report) as f:
        row, = json.load(f)
    assert row['id'] == 3 and 'accuracy/top1' in row and row['gflops'] > 0
    with open(osp.join(osp.dirname(report), 'budget.json')) as f:
        budget = json.load(f)
    assert budget['selection']['id'] == 3
    assert budget['selection']['rule'] == 'metric'
    assert budget['metrics']['accuracy/top1'] == row['accuracy/top1']



def test_test_tool_refuses_an_impossible_budget(synthetic, tmp_path, capsys):
    # In this process (the error comes before any data is read): exit 2,
    # the smallest stitch and the budget in the message.
    model = _tiny_model()
    checkpoint = str(tmp_path / 'tiny.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    with pytest.raises(SystemExit) as info:
        run(tools_test_main, [CONFIG, checkpoint, '--work-dir',
                              str(tmp_path / 'work'), '--flops-budget', '1M',
                              '--cfg-options',
                              *data_root_options(synthetic('imagenet'))])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert 'error: --flops-budget 1M: No stitch fits the budget FLOPs <= ' \
        '0.001 GFLOPs (8 stitches): the smallest is stitch 0 (S[0-2]) with ' \
        '0.003905 GFLOPs' in err
