"""StitchingLayer (LoRA stitching map) and NormalEquations (its
least-squares initialisation)."""
import copy
import os.path as osp

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from flexvit_mm.models.stitching import NormalEquations, StitchingLayer

from .conftest import free_port


def _random_lora_layer(in_features=6, out_features=5, rank=3, seed=0):
    """A float64 layer whose B is non-zero, so B·A actually matters."""
    torch.manual_seed(seed)
    layer = StitchingLayer(in_features, out_features, rank).double()
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def _pinv_solution(x, y):
    """Reference: min-norm least squares by the pseudo-inverse of [X, 1]."""
    x = x.reshape(-1, x.shape[-1]).double()
    y = y.reshape(-1, y.shape[-1]).double()
    x_tilde = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    solution = torch.linalg.pinv(x_tilde) @ y
    return solution[:-1].T, solution[-1]


def _assert_matches_pinv(equations, x, y, rtol=1e-6):
    weight, bias = equations.solve()
    ref_weight, ref_bias = _pinv_solution(x, y)
    assert weight.dtype == bias.dtype == torch.float32
    assert weight.shape == ref_weight.shape and bias.shape == ref_bias.shape
    # The result is float32, so compare relative to the solution's size.
    scale = max(ref_weight.abs().max().item(), ref_bias.abs().max().item())
    torch.testing.assert_close(weight.double(), ref_weight, rtol=0,
                               atol=rtol * scale)
    torch.testing.assert_close(bias.double(), ref_bias, rtol=0,
                               atol=rtol * scale)


# ---------------------------------------------------------------- the layer


def test_forward_applies_low_rank_update():
    layer = _random_lora_layer()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    effective = layer.weight + layer.lora_B @ layer.lora_A / layer.rank
    expected = x @ effective.T + layer.bias
    for training in (True, False):
        layer.train(training)
        torch.testing.assert_close(layer(x), expected, rtol=1e-12,
                                   atol=1e-12)
    # The update must make a difference, or the check above proves nothing.
    plain = x @ layer.weight.T + layer.bias
    assert (layer(x) - plain).abs().max() > 1e-3
    torch.testing.assert_close(layer.merged_weight(), effective.detach(),
                               rtol=1e-12, atol=1e-12)


def test_init_starts_at_w0_and_freezes_it():
    torch.manual_seed(0)
    layer = StitchingLayer(6, 5, rank=4)
    x = torch.randn(3, 6)
    assert torch.equal(layer.lora_B, torch.zeros(5, 4))
    assert layer.lora_A.abs().sum() > 0
    for training in (True, False):
        layer.train(training)
        torch.testing.assert_close(
            layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias),
            rtol=0, atol=1e-6)
    trainable = {n for n, p in layer.named_parameters() if p.requires_grad}
    assert trainable == {'bias', 'lora_A', 'lora_B'}
    assert not layer.weight.requires_grad
    assert set(layer.state_dict()) == {'weight', 'bias', 'lora_A', 'lora_B'}
    assert layer.lora_A.shape == (4, 6) and layer.lora_B.shape == (5, 4)
    assert 'rank=4' in repr(layer)


def test_rank_zero_is_a_plain_trainable_linear():
    layer = StitchingLayer(6, 5)
    assert layer.rank == 0 and layer.lora_A is None and layer.lora_B is None
    assert set(layer.state_dict()) == {'weight', 'bias'}
    assert all(p.requires_grad for p in layer.parameters())
    x = torch.randn(4, 6)
    torch.testing.assert_close(
        layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias),
        rtol=0, atol=0)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None


def test_gradients_reach_bias_and_lora_but_not_w0():
    torch.manual_seed(0)
    layer = StitchingLayer(6, 5, rank=3)
    x = torch.randn(2, 4, 6)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is None
    assert layer.bias.grad.abs().sum() > 0
    # With B = 0 the gradient of A is exactly zero, but B's is not.
    assert layer.lora_B.grad.abs().sum() > 0
    assert torch.equal(layer.lora_A.grad, torch.zeros_like(layer.lora_A))

    # Once B is non-zero, A learns too; also in eval mode with autograd on.
    for training in (True, False):
        layer = _random_lora_layer(seed=1).train(training)
        layer(torch.randn(2, 4, 6, dtype=torch.float64)).pow(2).sum(
        ).backward()
        assert layer.weight.grad is None
        assert layer.lora_A.grad.abs().sum() > 0
        assert layer.lora_B.grad.abs().sum() > 0


def test_mode_switches_and_eval_state_dict_never_double_apply():
    layer = _random_lora_layer()
    x = torch.randn(3, 6, dtype=torch.float64)
    state_before = copy.deepcopy(layer.state_dict())

    layer.eval()
    eval_output = layer(x)
    layer.train()
    train_output = layer(x)
    # The two forward paths differ only by rounding.
    torch.testing.assert_close(eval_output, train_output, rtol=1e-12,
                               atol=1e-12)
    for _ in range(3):
        layer.eval()
        assert torch.equal(layer(x), eval_output)
        layer.train()
        assert torch.equal(layer(x), train_output)

    # A state dict saved in eval mode holds the unmerged W0 ...
    layer.eval()
    saved = layer.state_dict()
    assert saved.keys() == state_before.keys()
    for name, tensor in state_before.items():
        assert torch.equal(saved[name], tensor), name
    assert not torch.allclose(saved['weight'], layer.merged_weight())

    # ... so a fresh layer loading it computes exactly the same map.
    fresh = StitchingLayer(6, 5, rank=3).double()
    fresh.load_state_dict(saved)
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, state_before[name]), name
    fresh.eval()
    assert torch.equal(fresh(x), eval_output)
    fresh.train()
    assert torch.equal(fresh(x), train_output)


def test_eval_output_follows_parameter_updates():
    layer = _random_lora_layer().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    before = layer(x)
    with torch.no_grad():
        layer.lora_B.mul_(2)
    effective = layer.weight + layer.lora_B @ layer.lora_A / layer.rank
    torch.testing.assert_close(layer(x), x @ effective.T + layer.bias,
                               rtol=1e-12, atol=1e-12)
    assert not torch.allclose(layer(x), before)


def test_init_from_least_squares():
    layer = _random_lora_layer(in_features=4, out_features=3, rank=2)
    lora_a = layer.lora_A.detach().clone()
    weight = torch.randn(3, 4)
    bias = torch.randn(3)
    layer.init_from_least_squares(weight, bias)
    assert torch.equal(layer.weight, weight.double())
    assert torch.equal(layer.bias, bias.double())
    assert torch.equal(layer.lora_B, torch.zeros(3, 2, dtype=torch.float64))
    assert torch.equal(layer.lora_A, lora_a)
    assert torch.equal(layer.merged_weight(), weight.double())
    assert not layer.weight.requires_grad

    with pytest.raises(ValueError, match='weight must have shape'):
        layer.init_from_least_squares(torch.randn(4, 3), bias)
    with pytest.raises(ValueError, match='bias must have shape'):
        layer.init_from_least_squares(weight, torch.randn(4))


@pytest.mark.parametrize('kwargs', [
    dict(in_features=0, out_features=3),
    dict(in_features=3, out_features=3, rank=-1),
    dict(in_features=3, out_features=3, rank=1.5),
])
def test_layer_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        StitchingLayer(**kwargs)


# ---------------------------------------------------------- least squares


def test_solution_matches_pinv_well_conditioned():
    torch.manual_seed(0)
    x = torch.randn(4, 50, 8, dtype=torch.float64)
    true_weight = torch.randn(5, 8, dtype=torch.float64)
    y = x @ true_weight.T + 0.3 + 0.01 * torch.randn(4, 50, 5,
                                                     dtype=torch.float64)
    equations = NormalEquations(8, 5)
    equations.update(x, y)
    assert equations.num_rows == 200
    _assert_matches_pinv(equations, x, y)


@pytest.mark.parametrize('case', ['fewer_rows', 'repeated_columns',
                                  'constant_column'])
def test_solution_matches_pinv_rank_deficient(case):
    torch.manual_seed(1)
    if case == 'fewer_rows':
        x = torch.randn(7, 12, dtype=torch.float64)
    elif case == 'repeated_columns':
        base = torch.randn(60, 6, dtype=torch.float64)
        x = torch.cat([base, base[:, :3], 2 * base[:, 4:]], dim=1)
    else:
        # A constant feature duplicates the ones column of the bias.
        x = torch.randn(60, 6, dtype=torch.float64)
        x[:, 2] = 1.5
    y = torch.randn(x.shape[0], 4, dtype=torch.float64)
    equations = NormalEquations(x.shape[1], 4)
    equations.update(x, y)
    # The min-norm solution is unique; any other exact solution would fit
    # just as well but differ from pinv, so this pins the choice down.
    _assert_matches_pinv(equations, x, y)


def test_streaming_equals_one_batch():
    torch.manual_seed(2)
    x = torch.randn(90, 7, dtype=torch.float64)
    y = torch.randn(90, 3, dtype=torch.float64)
    whole = NormalEquations(7, 3)
    whole.update(x, y)
    streamed = NormalEquations(7, 3)
    # Uneven batches, one of them with leading (images, tokens) dimensions.
    streamed.update(x[:10], y[:10])
    streamed.update(x[10:70].reshape(4, 15, 7), y[10:70].reshape(4, 15, 3))
    streamed.update(x[70:], y[70:])
    assert streamed.num_rows == whole.num_rows == 90
    torch.testing.assert_close(streamed.gram, whole.gram, rtol=1e-12,
                               atol=1e-12)
    torch.testing.assert_close(streamed.cross, whole.cross, rtol=1e-12,
                               atol=1e-12)
    for a, b in zip(streamed.solve(), whole.solve()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_float32_inputs_are_solved_in_float64():
    # Features with a large common offset, as ViT residual streams have:
    # float32 normal equations lose the small variations to rounding.
    torch.manual_seed(3)
    x = (40 + 0.05 * torch.randn(2000, 6)).float()
    y = (x.double() - 40) @ torch.randn(6, 3, dtype=torch.float64) * 20
    y = y.float()
    equations = NormalEquations(6, 3)
    equations.update(x, y)
    assert equations.gram.dtype == equations.cross.dtype == torch.float64
    _assert_matches_pinv(equations, x, y, rtol=1e-5)

    # The same equations solved in float32 are visibly wrong, so the check
    # above would catch a float32 solve.
    solution32 = torch.linalg.pinv(equations.gram.float(),
                                   hermitian=True) @ equations.cross.float()
    ref_weight, _ = _pinv_solution(x, y)
    assert (solution32[:-1].T.double() - ref_weight).abs().max() > \
        1e-2 * ref_weight.abs().max()


def test_fitted_layer_reproduces_an_affine_map():
    torch.manual_seed(4)
    x = torch.randn(3, 40, 6)
    true_weight, true_bias = torch.randn(4, 6), torch.randn(4)
    y = x @ true_weight.T + true_bias
    equations = NormalEquations(6, 4)
    equations.update(x, y)
    layer = StitchingLayer(6, 4, rank=2)
    layer.init_from_least_squares(*equations.solve())
    torch.testing.assert_close(layer(x), y, rtol=1e-4, atol=1e-4)


def test_least_squares_errors():
    equations = NormalEquations(4, 3)
    with pytest.raises(ValueError, match='no rows'):
        equations.solve()
    with pytest.raises(ValueError, match=r'x must have shape'):
        equations.update(torch.randn(5, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=r'y must have shape'):
        equations.update(torch.randn(5, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match='same leading'):
        equations.update(torch.randn(5, 4), torch.randn(6, 3))
    assert equations.num_rows == 0
    with pytest.raises(ValueError, match='not finite'):
        equations.update(torch.full((2, 4), float('nan')), torch.randn(2, 3))
        equations.solve()
    with pytest.raises(ValueError):
        NormalEquations(0, 3)


def test_all_reduce_without_distributed_is_a_noop_once():
    torch.manual_seed(5)
    x, y = torch.randn(20, 4), torch.randn(20, 2)
    equations = NormalEquations(4, 2)
    equations.update(x, y)
    before = equations.solve()
    equations.all_reduce()
    assert equations.num_rows == 20
    for a, b in zip(equations.solve(), before):
        assert torch.equal(a, b)
    # Reducing twice, or adding rows after reducing, would desynchronise
    # or double-count the ranks' data.
    with pytest.raises(RuntimeError, match='already reduced'):
        equations.all_reduce()
    with pytest.raises(RuntimeError, match='after all_reduce'):
        equations.update(x, y)


def _rank_features(rank):
    """Different data on each rank, with different row counts."""
    generator = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(3 + rank, 11, 5, generator=generator)
    y = torch.randn(3 + rank, 11, 4, generator=generator)
    return x, y


def _all_reduce_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    torch_dist.init_process_group('gloo',
                                  init_method=f'tcp://127.0.0.1:{port}',
                                  rank=rank, world_size=world_size)
    try:
        x, y = _rank_features(rank)
        equations = NormalEquations(5, 4)
        equations.update(x, y)
        equations.all_reduce()
        weight, bias = equations.solve()
        torch.save(dict(weight=weight, bias=bias,
                        num_rows=equations.num_rows),
                   osp.join(out_dir, f'rank{rank}.pth'))
    finally:
        torch_dist.destroy_process_group()


def test_all_reduce_across_two_gloo_ranks(tmp_path):
    world_size = 2
    mp.spawn(_all_reduce_worker,
             args=(world_size, free_port(), str(tmp_path)),
             nprocs=world_size)
    results = [torch.load(tmp_path / f'rank{rank}.pth')
               for rank in range(world_size)]
    # Identical sums on every rank give bit-identical solutions.
    assert torch.equal(results[0]['weight'], results[1]['weight'])
    assert torch.equal(results[0]['bias'], results[1]['bias'])

    features = [_rank_features(rank) for rank in range(world_size)]
    x_all = torch.cat([x.reshape(-1, 5) for x, _ in features])
    y_all = torch.cat([y.reshape(-1, 4) for _, y in features])
    assert results[0]['num_rows'] == results[1]['num_rows'] == x_all.shape[0]
    union = NormalEquations(5, 4)
    union.update(x_all, y_all)
    _assert_matches_pinv(union, x_all, y_all)
    for a, b in zip((results[0]['weight'], results[0]['bias']),
                    union.solve()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # Rank 0's own data alone gives a different fit, so the reduction
    # actually happened.
    alone = NormalEquations(5, 4)
    alone.update(*features[0])
    assert not torch.allclose(alone.solve()[0], results[0]['weight'],
                              atol=1e-4)
