"""Deploy-time fusion of a whole model: every module that can fuse itself
(``switch_to_deploy()``, e.g. SHViT and its BN+Linear head) is fused once."""
from typing import List

import torch.nn as nn

from ..errors import FlexvitError


class FuseError(FlexvitError, ValueError):
    """The model cannot be fused as it is (e.g. it is in training mode)."""


def can_fuse(model: nn.Module) -> bool:
    """Whether any module of ``model`` has ``switch_to_deploy()``."""
    return any(callable(getattr(m, 'switch_to_deploy', None))
               for m in model.modules())


def fuse_model(model: nn.Module) -> List[str]:
    """Call ``switch_to_deploy()`` on every module that has one.

    Only the outermost such modules are called: a module's
    ``switch_to_deploy`` handles its own submodules, and fusing one twice is
    an error. Modules already fused (``deploy`` is True, e.g. built with
    ``deploy=True``) are skipped. The fused modules are left in eval mode.

    Args:
        model (nn.Module): The model, in eval mode.

    Returns:
        list[str]: The names of the modules fused now ('' for the model);
        empty when nothing (more) can be fused.

    Raises:
        FuseError: some module is in training mode. A fused BatchNorm
            computes with its running statistics, a training one with the
            batch's: fusing would change the function.
    """
    training = [name or type(model).__name__
                for name, m in model.named_modules() if m.training]
    if training:
        raise FuseError(
            f'the model is in training mode (modules {training[:5]}'
            f'{" ..." if len(training) > 5 else ""}); fusing folds the '
            'BatchNorm running statistics and is only valid in eval mode. '
            'Call model.eval() first.')
    fused, handled = [], []
    for name, module in list(model.named_modules()):
        if not callable(getattr(module, 'switch_to_deploy', None)):
            continue
        if any(p == '' or name.startswith(p + '.') for p in handled):
            continue  # inside a module that fuses its own subtree
        handled.append(name)
        if getattr(module, 'deploy', False) is True:
            continue
        module.switch_to_deploy()
        # the fused convs/linears are new modules, created in training mode
        module.train(False)
        fused.append(name)
    return fused
