"""SHViT's classifier head for mmpretrain: BatchNorm1d then Linear."""
import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS


@MODELS.register_module()
class SHViTClsHead(ClsHead):
    """BatchNorm1d + Linear classifier of SHViT (the official ``BN_Linear``),
    in mmpretrain's ``LeViTClsHead`` style.

    It takes the backbone's last output; a (B, C, H, W) map is average
    pooled first, so a ``GlobalAveragePooling`` neck is optional.

    Args:
        num_classes (int): Number of classes. Defaults to 1000.
        in_channels (int): Input channels (the last stage's width, e.g. 448
            for SHViT-S4).
        deploy (bool): Build the fused head (a single Linear). Defaults to
            False.
        init_cfg (dict | list[dict]): Initialisation; by default the Linear
            is trunc-normal (std 0.02) with zero bias, as in the official
            code.
        **kwargs: Passed to ``ClsHead`` (e.g. ``loss``, ``topk``).
    """

    def __init__(self,
                 num_classes=1000,
                 in_channels=None,
                 deploy=False,
                 init_cfg=dict(type='TruncNormal', layer='Linear', std=.02),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if in_channels is None or num_classes <= 0:
            raise ValueError('SHViTClsHead needs in_channels and a positive '
                             f'num_classes, got in_channels={in_channels}, '
                             f'num_classes={num_classes}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.bn = nn.BatchNorm1d(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=.02)
        nn.init.zeros_(self.fc.bias)
        self.deploy = False
        if deploy:
            self.switch_to_deploy()

    def pre_logits(self, feats):
        if isinstance(feats, (tuple, list)):
            feats = feats[-1]
        if feats.dim() == 4:
            feats = feats.mean((2, 3))
        return feats

    def forward(self, feats):
        x = self.pre_logits(feats)
        if self.bn is not None:
            x = self.bn(x)
        return self.fc(x)

    @torch.no_grad()
    def switch_to_deploy(self):
        """Fold the BatchNorm1d into the Linear (BN comes first, so the BN
        scale multiplies the Linear's input columns). A second call raises
        ``RuntimeError``."""
        if self.deploy:
            raise RuntimeError('SHViTClsHead is already fused '
                               '(switch_to_deploy was called before).')
        bn, fc = self.bn, self.fc
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(self.in_channels, self.num_classes,
                          device=fc.weight.device, dtype=fc.weight.dtype)
        fused.weight.copy_(fc.weight * scale[None, :])
        fused.bias.copy_(fc.weight @ shift + fc.bias)
        self.fc = fused
        self.bn = None
        self.deploy = True
