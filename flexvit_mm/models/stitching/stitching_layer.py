"""Stitching layer of SN-Netv2: a token-wise linear map with a LoRA update.

A stitching layer maps the tokens of one ViT (width ``in_features``) into
the token space of another (width ``out_features``). SN-Netv2 initialises
the map by least squares on paired features and then fine-tunes only a
low-rank update ``B·A`` on top of the frozen solution ``W0``, so the
effective weight is ``W0 + (1 / rank) · B · A``.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class StitchingLayer(nn.Module):
    """Token-wise linear map ``y = x · (W0 + B·A / rank)ᵀ + bias``.

    With ``rank > 0`` (SN-Netv2) ``W0`` is frozen and only ``bias``,
    ``lora_A`` and ``lora_B`` train; ``lora_B`` starts at zero, so training
    starts exactly at ``W0``. With ``rank == 0`` (SN-Net v1) the layer is a
    plain, fully trainable linear layer and has no LoRA parameters.

    The parameters are named like the official implementation's (``weight``,
    ``bias``, ``lora_A``, ``lora_B``) so its checkpoints load one to one.
    Unlike the official implementation, ``B·A`` is never merged into
    ``weight`` in place: it merges on ``eval()`` and un-merges on
    ``train()``, so a state dict saved in eval mode, or a missed mode switch,
    applies ``B·A`` twice. Here ``state_dict()`` always holds the unmerged
    ``W0`` and switching modes never touches a parameter.

    Args:
        in_features (int): Width of the input tokens.
        out_features (int): Width of the output tokens.
        rank (int): Rank of the update ``B·A``; 0 disables it and makes the
            whole layer trainable. Defaults to 0.
    """

    def __init__(self, in_features, out_features, rank=0):
        super().__init__()
        for name, value, minimum in (('in_features', in_features, 1),
                                     ('out_features', out_features, 1),
                                     ('rank', rank, 0)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < minimum:
                raise ValueError(
                    f'StitchingLayer: {name} must be an int >= {minimum}, '
                    f'got {value!r}.')
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        # lora_alpha is 1 in SN-Netv2, so the update is scaled by 1 / rank.
        self.scaling = 1.0 / rank if rank > 0 else 0.0

        self.weight = nn.Parameter(torch.empty(out_features, in_features),
                                   requires_grad=rank == 0)
        self.bias = nn.Parameter(torch.empty(out_features))
        if rank > 0:
            self.lora_A = nn.Parameter(torch.empty(rank, in_features))
            self.lora_B = nn.Parameter(torch.empty(out_features, rank))
        else:
            # Registered as None so rank-0 layers have no LoRA entries in
            # parameters() or state_dict(), but the attributes still exist.
            self.register_parameter('lora_A', None)
            self.register_parameter('lora_B', None)
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise like ``nn.Linear``, with ``lora_B`` at zero.

        ``W0`` and ``bias`` normally get overwritten by
        :meth:`init_from_least_squares`; the ``nn.Linear`` recipe only gives
        a sensible starting point when they are not.
        """
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.bias, -bound, bound)
        if self.rank > 0:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            # A zero B makes the effective weight exactly W0 at the start.
            nn.init.zeros_(self.lora_B)

    def _effective_weight(self):
        """``W0 + B·A / rank``, differentiable, as a new tensor (rank > 0)."""
        return self.weight + (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x):
        """Map tokens ``x`` of shape ``(..., in_features)`` to
        ``(..., out_features)``.

        Args:
            x (torch.Tensor): Input tokens.

        Returns:
            torch.Tensor: Output tokens.
        """
        if self.rank == 0:
            return F.linear(x, self.weight, self.bias)
        if self.training:
            # Kept factored while training so that backward only forms
            # rank-sized gradients for A and B (tokens·rank·(in+out) work)
            # and never a full out×in weight gradient, which the merged
            # form would need.
            low_rank = F.linear(F.linear(x, self.lora_A), self.lora_B)
            return (F.linear(x, self.weight, self.bias) +
                    low_rank * self.scaling)
        # In eval one matmul with the merged weight is cheaper than three.
        if torch.is_grad_enabled() and (self.lora_A.requires_grad
                                        or self.lora_B.requires_grad
                                        or self.weight.requires_grad):
            # Gradients must still reach A and B when autograd is on.
            return F.linear(x, self._effective_weight(), self.bias)
        return F.linear(x, self._cached_merged_weight(), self.bias)

    def _merge_key(self):
        # A parameter changed, was reloaded or moved: every in-place update
        # bumps _version, and a move or dtype change gives new storage.
        return tuple((p._version, p.data_ptr(), p.dtype, p.device)
                     for p in (self.weight, self.lora_A, self.lora_B))

    def _cached_merged_weight(self):
        """The merged weight for inference, computed once per parameter
        change rather than per call, so a stitch costs what a plain linear
        layer costs (and FLOPs counts see only the per-token product).
        Not a buffer: it never enters the state dict."""
        key = self._merge_key()
        if getattr(self, '_merge_cache_key', None) != key:
            with torch.no_grad():
                self._merge_cache = self._effective_weight()
            self._merge_cache_key = key
        return self._merge_cache

    def train(self, mode=True):
        super().train(mode)
        if not mode and self.rank > 0:
            self._cached_merged_weight()  # merge now, not in a forward
        else:
            self._merge_cache = self._merge_cache_key = None
        return self

    @torch.no_grad()
    def merged_weight(self):
        """The effective weight ``W0 + B·A / rank`` for export.

        Returns:
            torch.Tensor: A new ``(out_features, in_features)`` tensor,
            detached from autograd; the layer itself is left unchanged.
        """
        if self.rank == 0:
            return self.weight.detach().clone()
        return self._effective_weight()

    @torch.no_grad()
    def init_from_least_squares(self, weight, bias):
        """Set ``W0`` and ``bias`` to a least-squares solution.

        ``lora_B`` is reset to zero so the effective weight equals the
        solution exactly; ``lora_A`` is kept, since with a zero ``B`` it
        does not change the output.

        Args:
            weight (torch.Tensor): ``(out_features, in_features)`` weight.
            bias (torch.Tensor): ``(out_features,)`` bias.

        Raises:
            ValueError: If a shape does not match the layer.
        """
        expected_weight = (self.out_features, self.in_features)
        if tuple(weight.shape) != expected_weight:
            raise ValueError(
                f'StitchingLayer.init_from_least_squares: weight must have '
                f'shape {expected_weight}, got {tuple(weight.shape)}.')
        if tuple(bias.shape) != (self.out_features, ):
            raise ValueError(
                f'StitchingLayer.init_from_least_squares: bias must have '
                f'shape ({self.out_features},), got {tuple(bias.shape)}.')
        # copy_ converts dtype and device to the layer's own.
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        if self.rank > 0:
            self.lora_B.zero_()

    def extra_repr(self):
        return (f'in_features={self.in_features}, '
                f'out_features={self.out_features}, rank={self.rank}')
