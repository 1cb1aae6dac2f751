"""Choosing the stitch of a built model, and parsing stitch-id lists.

A stitched backbone (``SNNetv2``) holds many sub-networks ("stitches")
selected at runtime by an integer id. It is recognised by duck typing: it
has a callable ``set_stitch`` and a ``stitch_ids`` attribute (the valid
ids). :func:`set_stitch` is the one public way to choose the stitch of any
built model -- a classifier, segmentor or detector, wrapped for
distributed training or test-time augmentation or not.
"""
import numbers
from typing import Iterable, List, Optional, Sequence

__all__ = ['is_stitched', 'find_stitched_backbone', 'set_stitch',
           'parse_stitch_ids', 'format_ids']


def is_stitched(module) -> bool:
    """Whether ``module`` follows the stitched-backbone contract."""
    return (callable(getattr(module, 'set_stitch', None))
            and getattr(module, 'stitch_ids', None) is not None)


def format_ids(ids: Iterable[int]) -> str:
    """Compact, readable form of a set of ids: ``0-12, 14-134``."""
    ids = sorted(set(int(i) for i in ids))
    parts: List[str] = []
    start = previous = None
    for value in ids + [None]:
        if start is None:
            start = previous = value
        elif value is not None and value == previous + 1:
            previous = value
        else:
            parts.append(
                str(start) if start == previous else f'{start}-{previous}')
            start = previous = value
    return ', '.join(parts) if parts else '(none)'


def _unwrap(model):
    """Strip distributed wrappers (``is_model_wrapper``) and test-time
    augmentation wrappers (``BaseTTAModel``), which all keep the wrapped
    model in ``.module``."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    names = []
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        if is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            names.append(type(model).__name__)
            model = model.module
        else:
            break
    return model, names


def find_stitched_backbone(model):
    """The stitched backbone of a built model.

    Args:
        model: A built model (``ImageClassifier``, ``EncoderDecoder``,
            a detector, ...), possibly inside mmengine model wrappers
            (``MMDistributedDataParallel``, ...) or a TTA model.

    Returns:
        nn.Module: ``model.backbone`` when it is stitched, else the first
        submodule that is.

    Raises:
        TypeError: If the model has no stitched backbone.
    """
    inner, wrappers = _unwrap(model)
    backbone = getattr(inner, 'backbone', None)
    if backbone is not None and is_stitched(backbone):
        return backbone
    modules = inner.modules() if callable(getattr(inner, 'modules',
                                                  None)) else [inner]
    for module in modules:
        if is_stitched(module):
            return module
    name = type(inner).__name__
    if wrappers:
        name = '('.join(wrappers + [name]) + ')' * len(wrappers)
    raise TypeError(
        f'{name} has no stitched backbone; set_stitch works on models whose '
        'backbone is SNNetv2 (a module with set_stitch() and stitch_ids).')


def _plain_id(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def set_stitch(model, stitch_id):
    """Choose the stitch a built model runs in eval mode.

    The one public way to select a stitch on a classifier, segmentor or
    detector, wrapped (DDP, TTA) or not.

    Args:
        model: A built model, or a stitched backbone itself.
        stitch_id (int): One of ``backbone.stitch_ids``.

    Returns:
        nn.Module: The stitched backbone.

    Raises:
        TypeError: If the model has no stitched backbone.
        ValueError: If ``stitch_id`` is not a valid id (the message names
            the valid ids).
    """
    backbone = find_stitched_backbone(model)
    value = _plain_id(stitch_id)
    valid = tuple(backbone.stitch_ids)
    if isinstance(value, bool) or value not in valid:
        raise ValueError(
            f'Unknown stitch id {stitch_id!r} for {type(backbone).__name__}: '
            f'valid ids are {format_ids(valid)}.')
    backbone.set_stitch(value)
    return backbone


def _parse_int(token: str, spec) -> Optional[int]:
    token = token.strip()
    if token.isdigit():
        return int(token)
    raise ValueError(
        f'Cannot read stitch id {token!r} in {spec!r}: give "all", an id '
        '(12), a comma list (3,12,80) or a range (2-12).')


def parse_stitch_ids(spec, valid_ids: Sequence[int]) -> List[int]:
    """The stitch ids a user asked for.

    Args:
        spec (str | int | Sequence): ``'all'``; an id (``3`` or ``'3'``);
            a comma list ``'3,12,80'``; ranges ``'2-12'`` (inclusive), also
            mixed: ``'0,2-5,80'``; or a list/tuple of any of those.
            A range selects the valid ids inside it (the stitching space may
            have gaps), must select at least one and must not run past the
            first or last id; a single id must be valid.
        valid_ids (Sequence[int]): The backbone's ``stitch_ids``.

    Returns:
        list[int]: Sorted, without duplicates.

    Raises:
        ValueError: For an unknown id, an empty or unreadable spec, a
            descending range or one running past the first or last id. The
            message names the valid ids.
    """
    valid = sorted(set(int(i) for i in valid_ids))
    valid_set = set(valid)
    hint = f'valid ids are {format_ids(valid)}'

    if isinstance(spec, bool) or spec is None:
        raise ValueError(f'Cannot read stitch ids {spec!r}: give "all", an '
                         f'id, a comma list or a range; {hint}.')
    if isinstance(spec, numbers.Integral):
        tokens = [int(spec)]
    elif isinstance(spec, str):
        if spec.strip().lower() == 'all':
            return list(valid)
        tokens = spec.split(',')
    elif isinstance(spec, (list, tuple, set, frozenset)):
        tokens = []
        for item in spec:
            if isinstance(item, bool):
                raise ValueError(f'Cannot read stitch id {item!r}; {hint}.')
            if isinstance(item, numbers.Integral):
                tokens.append(int(item))
            elif isinstance(item, str):
                if item.strip().lower() == 'all':
                    return list(valid)
                tokens.extend(item.split(','))
            else:
                raise ValueError(
                    f'Cannot read stitch id {item!r} in {spec!r}; {hint}.')
    else:
        raise ValueError(f'Cannot read stitch ids {spec!r} (a '
                         f'{type(spec).__name__}); {hint}.')

    chosen = set()
    unknown = []
    for token in tokens:
        if isinstance(token, int):
            if token in valid_set:
                chosen.add(token)
            else:
                unknown.append(str(token))
            continue
        token = token.strip()
        if not token:
            continue
        if '-' in token[1:] and not token.startswith('-'):
            first, last = token.split('-', 1)
            lo, hi = _parse_int(first, spec), _parse_int(last, spec)
            if lo > hi:
                raise ValueError(
                    f'Empty stitch-id range {token!r} (start > end); '
                    f'{hint}. Write the smaller id first.')
            inside = [i for i in valid if lo <= i <= hi]
            if not inside:
                raise ValueError(
                    f'The stitch-id range {token!r} holds no valid id; '
                    f'{hint}.')
            # Gaps inside the space are skipped, but a range that runs past
            # its ends would be cut short without a word.
            if lo < valid[0] or hi > valid[-1]:
                raise ValueError(
                    f'The stitch-id range {token!r} runs past the stitches '
                    f'(the first is {valid[0]}, the last {valid[-1]}); '
                    f'{hint}. Did you mean '
                    f'{max(lo, valid[0])}-{min(hi, valid[-1])}?')
            chosen.update(inside)
        else:
            try:
                value = _parse_int(token, spec)
            except ValueError as error:
                raise ValueError(f'{error} {hint[0].upper()}{hint[1:]}.')
            if value in valid_set:
                chosen.add(value)
            else:
                unknown.append(token)
    if unknown:
        raise ValueError(
            f'Unknown stitch id{"s" if len(unknown) > 1 else ""} '
            f'{", ".join(unknown)}; {hint}.')
    if not chosen:
        raise ValueError(f'No stitch id in {spec!r}; {hint}.')
    return sorted(chosen)
