"""Mistakes in a config, found while mmengine builds its modules, as user
errors.

mmengine's ``build_from_cfg`` turns every ``dict(type=..., ...)`` of a
config (model, dataset, transform, hook, metric, optimizer, loop, ...) into
an object. A misspelt ``type`` ends there in a ``KeyError`` and a key the
module does not take in a ``TypeError``, both with a traceback and without
a hint. :func:`config_error` recognises exactly these failures -- by the
frame of ``build_from_cfg`` that raised them and the module it was building
-- and returns a :class:`ConfigBuildError` naming the module, the bad name
and the closest valid names. Any other exception is left alone, so a bug
inside a module keeps its traceback.
"""
import difflib
import inspect
import re
from typing import Iterator, List, Optional

from mmengine.registry import Registry
from mmengine.registry.build_functions import build_from_cfg

from ..errors import FlexvitError

#: ``build_from_cfg``'s own message for a type no registry knows.
_UNKNOWN_TYPE = re.compile(r'^(?P<type>\S+) is not in the (?P<where>\S+) '
                           r'registry\.')
#: Python's messages when call arguments do not bind to a signature.
_UNEXPECTED = re.compile(r"^(?P<func>[\w.<>]+)\(\) got an unexpected keyword "
                         r"argument '(?P<arg>\w+)'$")
_MISSING = re.compile(r'^(?P<func>[\w.<>]+)\(\) missing \d+ required '
                      r'(?:positional |keyword-only )?arguments?: '
                      r'(?P<args>.+)$')
#: Frames between ``build_from_cfg`` and an argument error that still belong
#: to constructing the object itself (its ``__init__`` chain through
#: ``super()``, or ``ManagerMixin.get_instance``).
_CONSTRUCTION = ('__init__', 'get_instance')
#: The fix every message ends with.
_FIX = ('Fix the config (or the --cfg-options that set it) and run the '
        'tool again.')


class ConfigBuildError(FlexvitError, ValueError):
    """A ``dict(type=...)`` of the config cannot be built: an unknown type,
    an argument the module does not take, or a value it refuses."""


def _frames(error) -> List:
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _build_frame(frames):
    """Index of the innermost ``build_from_cfg`` frame (the module being
    built when the error happened), or None."""
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].f_code is build_from_cfg.__code__:
            return index
    return None


def _registry_family(registry: Registry) -> Iterator[Registry]:
    """``registry``, its ancestors up to mmengine's root, then every other
    registry under that root (the toolboxes' registries of the same kind:
    mmseg's, mmdet's, mmpretrain's MODELS under mmengine's MODELS)."""
    seen = set()
    node = registry
    while node is not None:
        seen.add(id(node))
        yield node
        node = node.parent
    pending = [registry.root]
    while pending:
        node = pending.pop()
        if id(node) not in seen:
            seen.add(id(node))
            yield node
        pending.extend(node.children.values())


def _registered_names(registry: Registry) -> dict:
    """``{name as written in a config: registry}`` of every module the
    config could name from ``registry``: bare names for ``registry`` and its
    ancestors (what the lookup searched), ``scope.Name`` for the others."""
    searched = set()
    node = registry
    while node is not None:
        searched.add(id(node))
        node = node.parent
    names = {}
    for node in _registry_family(registry):
        for name in node.module_dict:
            key = name if id(node) in searched else f'{node.scope}.{name}'
            names.setdefault(key, node)
    return names


def close_names(word: str, names, n: int = 3) -> List[str]:
    """The names closest to ``word`` (case and a ``scope.`` prefix
    ignored), best first: at most ``n``, and none much further than the
    best (a typo's own name, not its distant cousins)."""
    def plain(name):
        return name.rsplit('.', 1)[-1].lower()

    target = plain(word)
    scored = []
    for name in names:
        matcher = difflib.SequenceMatcher(None, target, plain(name))
        if matcher.real_quick_ratio() >= 0.6 and matcher.ratio() >= 0.6:
            scored.append((matcher.ratio(), name))
    if not scored:
        return []
    scored.sort(key=lambda item: (-item[0], item[1]))
    best = scored[0][0]
    return [name for score, name in scored if score >= best - 0.1][:n]


def _quoted(names) -> str:
    return ', '.join(repr(name) for name in names)


def _unknown_type(error, frame) -> Optional[ConfigBuildError]:
    message = error.args[0] if error.args else ''
    found = _UNKNOWN_TYPE.match(message) if isinstance(message,
                                                       str) else None
    registry = frame.f_locals.get('registry')
    if found is None or not isinstance(registry, Registry):
        return None
    obj_type = found.group('type')
    names = _registered_names(registry)
    hint = close_names(obj_type, names)
    text = (f'Unknown type {obj_type!r} in the config: no {registry.name} of '
            f'that name is registered ({registry.scope} searched, with '
            'mmengine\'s and the other toolboxes\' registries). ')
    if hint:
        text += f'Did you mean {_quoted(hint)}? '
    text += ('A module of another package is found once the package is '
             'imported: list it in custom_imports=dict(imports=[...]). ')
    return ConfigBuildError(text + _FIX)


def _accepted_arguments(obj) -> List[str]:
    """The keyword arguments ``obj`` takes: its signature's named
    parameters, and, where ``__init__`` passes ``**kwargs`` on, those of
    its base classes' ``__init__``."""
    functions = ([klass.__dict__['__init__'] for klass in obj.__mro__
                  if '__init__' in klass.__dict__ and klass is not object]
                 if inspect.isclass(obj) else [obj])
    names = []
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # a builtin without a signature
            break
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                  parameter.KEYWORD_ONLY) and \
                    parameter.name not in ('self', 'cls') and \
                    parameter.name not in names:
                names.append(parameter.name)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


def _names_constructor(func: str, obj) -> bool:
    """Whether the function named in a TypeError is ``obj`` itself or an
    ``__init__`` of its class hierarchy."""
    if not inspect.isclass(obj):
        return func in (obj.__qualname__, getattr(obj, '__name__', None))
    return any(func == f'{klass.__qualname__}.__init__'
               for klass in obj.__mro__)


def _bad_arguments(error, frames, index) -> Optional[ConfigBuildError]:
    frame = frames[index]
    obj = frame.f_locals.get('obj_cls')
    if obj is None or any(f.f_code.co_name not in _CONSTRUCTION
                          for f in frames[index + 1:]):
        return None
    message = str(error)
    name = getattr(obj, '__name__', repr(obj))
    registry = frame.f_locals.get('registry')
    where = (f' (the {registry.scope} {registry.name} registry)'
             if isinstance(registry, Registry) else '')
    accepted = _accepted_arguments(obj)
    unexpected = _UNEXPECTED.match(message)
    if unexpected and _names_constructor(unexpected.group('func'), obj):
        arg = unexpected.group('arg')
        text = f'{name}{where} takes no argument {arg!r}, set in the config. '
        hint = close_names(arg, accepted)
        if hint:
            text += f'Did you mean {_quoted(hint)}? '
        elif accepted:
            shown = accepted[:12]
            text += (f'It takes: {", ".join(shown)}'
                     f'{", ..." if len(accepted) > len(shown) else ""}. ')
        return ConfigBuildError(text + _FIX)
    missing = _MISSING.match(message)
    if missing and _names_constructor(missing.group('func'), obj):
        return ConfigBuildError(
            f'{name}{where} needs {missing.group("args")}, which the config '
            f'does not set. {_FIX}')
    return None


def _stitch_hint(obj, args) -> str:
    if 'stitch_id' not in args or not callable(getattr(obj, 'set_stitch',
                                                       None)):
        return ''
    return (' stitch_id is the stitch the model runs in eval mode. To '
            'evaluate other stitches, leave it and pass them to tools/test.py'
            ' CONFIG CHECKPOINT --stitch-id N (a list 3,5-8 or "all" '
            'evaluates several in one pass).')


def _refused_value(error, frames, index) -> Optional[ConfigBuildError]:
    """A ValueError of one of our modules' constructors. They check their
    arguments and say in the message what is wrong; other packages' may
    come from deep inside and keep their traceback."""
    frame = frames[index]
    obj = frame.f_locals.get('obj_cls')
    args = frame.f_locals.get('args') or {}
    if not (inspect.isclass(obj)
            and obj.__module__.split('.')[0] == 'flexvit_mm'
            and index + 1 < len(frames)
            and frames[index + 1].f_code.co_name == '__init__'):
        return None
    hint = _stitch_hint(obj, args) if 'stitch id' in str(error).lower() \
        else ''
    return ConfigBuildError(
        f'{obj.__name__} cannot be built from the config: {error}{hint} '
        f'{_FIX}')


def config_error(error: BaseException) -> Optional[ConfigBuildError]:
    """The user error a failed config build amounts to.

    Args:
        error (BaseException): An exception raised while a tool ran.

    Returns:
        ConfigBuildError | None: For a ``KeyError`` of an unknown type, a
        ``TypeError`` of an argument the module does not take (or a
        required one missing), or a ``ValueError`` one of flexvit-mm's
        modules raised on its arguments -- each raised while
        ``build_from_cfg`` was building that module -- the error to report;
        None for anything else.
    """
    if not isinstance(error, (KeyError, TypeError, ValueError)):
        return None
    frames = _frames(error)
    index = _build_frame(frames)
    if index is None:
        return None
    if isinstance(error, KeyError):
        # Raised by build_from_cfg itself, not by the module it builds.
        if index != len(frames) - 1:
            return None
        return _unknown_type(error, frames[index])
    if isinstance(error, TypeError):
        return _bad_arguments(error, frames, index)
    return _refused_value(error, frames, index)
