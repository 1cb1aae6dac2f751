"""Streaming least squares for initialising stitching layers.

SN-Net initialises a stitching layer by fitting ``Y ≈ X·Wᵀ + b`` on paired
features of the two ViTs it joins: every token of every image is one row.
There are far too many tokens to keep ``X`` in memory, so
:class:`NormalEquations` only accumulates the sums ``X̃ᵀX̃`` and ``X̃ᵀY``
(with ``X̃ = [X, 1]``), whose size depends on the widths alone, and solves
the normal equations at the end.
"""
import torch
from mmengine import dist


class NormalEquations:
    """Accumulates the normal equations of ``Y ≈ X·Wᵀ + b`` over batches.

    Sums are kept in float64 whatever the input dtype: ``X̃ᵀX̃`` squares the
    condition number of the features, and with millions of rows float32
    sums would also lose the small ones to rounding.

    Usage: call :meth:`update` on every batch, then :meth:`all_reduce` once
    (a no-op outside distributed runs), then :meth:`solve`.

    Args:
        in_features (int): Width of the inputs ``x``.
        out_features (int): Width of the targets ``y``.
    """

    def __init__(self, in_features, out_features):
        for name, value in (('in_features', in_features),
                            ('out_features', out_features)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 1:
                raise ValueError(
                    f'NormalEquations: {name} must be a positive int, '
                    f'got {value!r}.')
        self.in_features = in_features
        self.out_features = out_features
        # The trailing row/column belongs to the ones column of X̃, i.e. to
        # the bias.
        self.gram = torch.zeros(in_features + 1, in_features + 1,
                                dtype=torch.float64)
        self.cross = torch.zeros(in_features + 1, out_features,
                                 dtype=torch.float64)
        self.num_rows = 0
        self._reduced = False

    @torch.no_grad()
    def update(self, x, y):
        """Add paired rows to the sums.

        Args:
            x (torch.Tensor): Inputs of shape ``(..., in_features)``.
            y (torch.Tensor): Targets of shape ``(..., out_features)`` with
                the same leading dimensions as ``x``; each position in the
                leading dimensions (e.g. each token of each image) is a row.

        Raises:
            ValueError: If the shapes do not fit.
            RuntimeError: If called after :meth:`all_reduce`.
        """
        if self._reduced:
            raise RuntimeError(
                'NormalEquations.update: called after all_reduce(); rows '
                'added now would reach only this rank. Accumulate all data '
                'before reducing.')
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f'NormalEquations.update: x must have shape '
                f'(..., {self.in_features}), got {tuple(x.shape)}.')
        if y.dim() < 1 or y.shape[-1] != self.out_features:
            raise ValueError(
                f'NormalEquations.update: y must have shape '
                f'(..., {self.out_features}), got {tuple(y.shape)}.')
        if x.shape[:-1] != y.shape[:-1]:
            raise ValueError(
                f'NormalEquations.update: x and y must have the same leading '
                f'dimensions, got {tuple(x.shape)} and {tuple(y.shape)}.')
        if self.num_rows == 0 and self.gram.device != x.device:
            # Accumulate where the features live, so that GPU features are
            # never copied to the host batch by batch.
            self.gram = self.gram.to(x.device)
            self.cross = self.cross.to(x.device)
        rows_x = x.reshape(-1, self.in_features).to(self.gram.device,
                                                    torch.float64)
        rows_y = y.reshape(-1, self.out_features).to(self.gram.device,
                                                     torch.float64)
        d = self.in_features
        # The blocks of X̃ᵀX̃ and X̃ᵀY, filled without materialising the
        # ones column (that would copy every row once more).
        self.gram[:d, :d] += rows_x.T @ rows_x
        column_sums = rows_x.sum(dim=0)
        self.gram[:d, d] += column_sums
        self.gram[d, :d] += column_sums
        self.gram[d, d] += rows_x.shape[0]
        self.cross[:d] += rows_x.T @ rows_y
        self.cross[d] += rows_y.sum(dim=0)
        self.num_rows += rows_x.shape[0]

    @torch.no_grad()
    def all_reduce(self):
        """Sum the accumulated equations over all ranks.

        Afterwards every rank holds the sums over all ranks' rows, so
        :meth:`solve` gives the same solution everywhere. Outside a
        distributed run nothing changes. Call it once, after the last
        :meth:`update`: reducing twice would count every row world-size
        times, so a second call raises.

        Raises:
            RuntimeError: If called a second time.
        """
        if self._reduced:
            raise RuntimeError(
                'NormalEquations.all_reduce: already reduced; a second '
                'reduction would count every row more than once.')
        # Set even without a distributed run, so that misuse fails the
        # same way on one process as on many.
        self._reduced = True
        if dist.get_world_size() < 2:
            return
        # One collective instead of three. The row count travels as a
        # float64, which is exact up to 2**53 rows.
        packed = torch.cat([
            self.gram.flatten(),
            self.cross.flatten(),
            torch.tensor([float(self.num_rows)], dtype=torch.float64,
                         device=self.gram.device),
        ])
        # mmengine moves the tensor to the backend's device and back.
        dist.all_reduce(packed, op='sum')
        gram_size = self.gram.numel()
        cross_size = self.cross.numel()
        self.gram.copy_(packed[:gram_size].view_as(self.gram))
        self.cross.copy_(
            packed[gram_size:gram_size + cross_size].view_as(self.cross))
        self.num_rows = int(packed[-1].item())

    @torch.no_grad()
    def solve(self, rcond=None):
        """Minimum-norm least-squares solution of the accumulated rows.

        Solves ``X̃ᵀX̃ · A = X̃ᵀY`` with the pseudo-inverse of ``X̃ᵀX̃`` in
        float64, which equals ``pinv(X̃) · Y`` (also when ``X̃`` is rank
        deficient, e.g. fewer rows than columns or repeated columns).

        Args:
            rcond (float, optional): Singular values of ``X̃`` below
                ``rcond`` times the largest one are treated as zero, as in
                ``torch.linalg.pinv(X̃, rtol=rcond)``. Since ``X̃ᵀX̃`` holds
                them squared, values below about ``sqrt(eps)`` (1.5e-8 in
                float64) cannot be resolved from the sums. Defaults to
                ``sqrt((in_features + 1) * eps)``, i.e. the default
                tolerance of ``pinv`` applied to ``X̃ᵀX̃``.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: float32 ``weight`` of shape
            ``(out_features, in_features)`` and ``bias`` of shape
            ``(out_features,)``.

        Raises:
            ValueError: If no rows were added or the sums are not finite.
        """
        if self.num_rows == 0:
            raise ValueError(
                'NormalEquations.solve: no rows were added; call update() '
                'with features first.')
        if not (torch.isfinite(self.gram).all()
                and torch.isfinite(self.cross).all()):
            raise ValueError(
                'NormalEquations.solve: the accumulated sums contain NaN or '
                'inf; the features fed to update() were not finite.')
        if rcond is None:
            eps = torch.finfo(torch.float64).eps
            gram_rtol = (self.in_features + 1) * eps
        else:
            if rcond < 0:
                raise ValueError(
                    f'NormalEquations.solve: rcond must be >= 0, got '
                    f'{rcond}.')
            gram_rtol = rcond**2
        # X̃ᵀX̃ is symmetric positive semi-definite, so an eigendecomposition
        # (hermitian=True) suffices and works on CPU and CUDA alike, unlike
        # the rank-revealing lstsq drivers, which are CPU-only.
        solution = torch.linalg.pinv(
            self.gram, rtol=gram_rtol, hermitian=True) @ self.cross
        weight = solution[:-1].T.to(torch.float32).contiguous()
        bias = solution[-1].to(torch.float32).contiguous()
        return weight, bias
