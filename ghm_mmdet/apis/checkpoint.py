"""Loading mmengine/mmdet checkpoints with an allowlist, on every supported torch, changing nothing but the result.

``torch.load(f, weights_only=False, pickle_module=...)`` with our own unpickler, whose ``find_class`` resolves
only :func:`allowed_globals` and whose ``BUILD`` sets state only on the objects a checkpoint legitimately
restores; stand-ins keep class-level state out of the file's reach (:class:`HistoryBufferStandIn`,
:func:`pickled_attribute`, :func:`numpy_dtype`). Anything else is refused with an :class:`UnsafeCheckpointError`
naming the file and the global. :func:`use_weights_only_loaders` applies it to every scheme loader of mmengine's
``CheckpointLoader``. Why this mechanism, and what it admits: docs/design.md, "Checkpoint safety".
"""
import _compat_pickle
import codecs
import collections
import functools
import io
import os
import pickle
import types
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
from mmengine.runner.checkpoint import CheckpointLoader

#: The statistics ``HistoryBuffer`` registers for itself and pickles as ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
#: The instance attributes a pickled ``HistoryBuffer`` restores (``__getstate__`` adds ``statistics_methods``).
HISTORY_BUFFER_ATTRIBUTES = ('max_length', '_log_history', '_count_history')
_HISTORY_BUFFER_GLOBAL = f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}'

# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; a checkpoint names whichever its writer had.
_NUMPY_MULTIARRAY_MODULES = ('numpy._core.multiarray', 'numpy.core.multiarray')
# What torch rebuilds tensors with (torch._utils), where this torch has it.
_TENSOR_REBUILD_FUNCTIONS = ('_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter',
                             '_rebuild_parameter_with_state', '_rebuild_qtensor', '_rebuild_sparse_tensor',
                             '_rebuild_meta_tensor_no_storage', '_rebuild_nested_tensor',
                             '_rebuild_device_tensor_from_numpy', '_rebuild_device_tensor_from_cpu_tensor')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside :func:`allowed_globals`, or a ``HistoryBuffer``
    state mmengine does not write; it was not loaded.

    Attributes:
        checkpoint (str or None): the file, where known.
        refused_global (str or None): the refused global's dotted name, e.g. ``'posix.system'``.
    """

    def __init__(self, message: str, checkpoint: Optional[str] = None,
                 refused_global: Optional[str] = None):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.refused_global = refused_global


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file is truncated or is not a ``torch.save`` file at all."""


class RefusedContent(Exception):
    """Raised while unpickling; :func:`load_checkpoint_safely` turns it into an
    :class:`UnsafeCheckpointError` naming the file."""

    def __init__(self, reason: str, refused_global: str):
        super().__init__(reason)
        self.refused_global = refused_global


_NOT_AMONG = 'which is not among the types mmengine/mmdet checkpoints contain (loaded with an allowlist)'


class AttributeOwner:
    """What the unpickler builds for a class whose static functions a checkpoint names as
    ``getattr(Class, name)``: only :func:`pickled_attribute` takes it, and calling it is refused."""

    def __init__(self, cls: type, names: Tuple[str, ...]):
        self.cls, self.names = cls, names
        self.dotted = f'{cls.__module__}.{cls.__qualname__}'

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise RefusedContent(f"it calls the pickled global '{self.dotted}', {_NOT_AMONG}", self.dotted)


#: OneCycleParamScheduler keeps its annealing function (a staticmethod) in its state.
ONE_CYCLE = AttributeOwner(OneCycleParamScheduler, ('_annealing_cos', '_annealing_linear'))


def pickled_attribute(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer.<statistic>`` and the
    functions an :class:`AttributeOwner` names resolve.

    Args:
        owner: the class as the pickle names it: :class:`HistoryBufferStandIn` (or ``HistoryBuffer``), or an
            :class:`AttributeOwner`.
        name (str): one of :data:`HISTORY_BUFFER_STATISTICS`, or of the owner's ``names``.

    Raises:
        RefusedContent: for any other object or attribute name.
    """
    if owner in (HistoryBufferStandIn, HistoryBuffer) and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    if isinstance(owner, AttributeOwner) and name in owner.names:
        return getattr(owner.cls, name)
    owner_name = ('HistoryBuffer' if owner is HistoryBufferStandIn else owner.cls.__name__
                  if isinstance(owner, AttributeOwner) else getattr(owner, '__name__', type(owner).__name__))
    raise RefusedContent(f"it holds the pickled global 'builtins.getattr' fetching {owner_name}.{name}, "
                         f'{_NOT_AMONG}', 'builtins.getattr')


def _refuse_history_state(problem: str):
    raise RefusedContent(f'its HistoryBuffer state {problem}, which mmengine never writes (loaded with an '
                         'allowlist)', _HISTORY_BUFFER_GLOBAL)


def _named(value: Any) -> str:
    return getattr(value, '__qualname__', None) or type(value).__name__


def checked_history_buffer_state(state: Any) -> Dict[str, Any]:
    """The instance attributes of a pickled ``HistoryBuffer``, checked against what ``__getstate__`` writes.

    Args:
        state: the pickled state: a dict with ``max_length`` (int >= 1), ``_log_history`` and
            ``_count_history`` (1-d numeric numpy arrays of one length) and, optionally,
            ``statistics_methods`` mapping some of :data:`HISTORY_BUFFER_STATISTICS` each to the
            ``HistoryBuffer`` function of that name.

    Returns:
        dict: ``max_length``, ``_log_history`` and ``_count_history`` (``statistics_methods`` is dropped:
        it only repeats mmengine's defaults).

    Raises:
        RefusedContent: anything else, e.g. ``'mean'`` mapped to ``HistoryBuffer.max``, a statistic of
            another name, or an attribute ``HistoryBuffer`` does not pickle.
    """
    if not isinstance(state, dict):
        _refuse_history_state(f'is a {type(state).__name__}, not a dict')
    unknown = sorted(repr(key) for key in state if key not in (*HISTORY_BUFFER_ATTRIBUTES, 'statistics_methods'))
    missing = [key for key in HISTORY_BUFFER_ATTRIBUTES if key not in state]
    if unknown:
        _refuse_history_state(f'sets the attribute(s) {", ".join(unknown)}')
    if missing:
        _refuse_history_state(f'lacks the attribute(s) {", ".join(missing)}')
    max_length = state['max_length']
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        _refuse_history_state(f'has max_length {max_length!r}, not an int >= 1')
    for key in ('_log_history', '_count_history'):
        history = state[key]
        if type(history) is not np.ndarray or history.ndim != 1 or history.dtype.kind not in 'biuf':
            _refuse_history_state(f'has a {key} that is not a 1-d numeric numpy array')
    if len(state['_log_history']) != len(state['_count_history']):
        _refuse_history_state('has a _log_history and a _count_history of different lengths')
    methods = state.get('statistics_methods', {})
    if not isinstance(methods, dict):
        _refuse_history_state(f'has statistics_methods of type {type(methods).__name__}')
    for name, method in methods.items():
        if name not in HISTORY_BUFFER_STATISTICS or method is not getattr(HistoryBuffer, name):
            # mmengine's __setstate__ would put this into HistoryBuffer._statistics_methods, for all buffers.
            _refuse_history_state(f'maps the statistic {name!r} to {_named(method)}')
    return {key: state[key] for key in HISTORY_BUFFER_ATTRIBUTES}


class HistoryBufferStandIn:
    """What the unpickler builds for a pickled ``HistoryBuffer``; its ``__setstate__`` makes it one.

    The state goes through :func:`checked_history_buffer_state`, and only the instance's own attributes are
    set: unlike ``HistoryBuffer.__setstate__``, nothing of the file reaches the class attribute
    ``HistoryBuffer._statistics_methods``.
    """

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(checked_history_buffer_state(state))
        # Both are plain classes with a __dict__, so the object can become a HistoryBuffer in place: every
        # reference the unpickler made to it sees the real class.
        self.__class__ = HistoryBuffer
        # Registers mmengine's own four statistics if no HistoryBuffer was built yet; nothing here comes
        # from the file.
        HistoryBuffer()


def numpy_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """Stand-in for ``numpy.dtype`` while unpickling: always a new dtype (``copy=True``).

    numpy pickles a dtype as ``numpy.dtype(char, align, copy)`` followed by ``BUILD``; with ``copy=False``
    that ``BUILD`` would set the state of numpy's cached dtype that the whole process shares.
    """
    return np.dtype(obj, align, True)


@functools.lru_cache(maxsize=1)
def allowed_globals() -> Dict[str, Any]:
    """The globals an mmengine/mmdet checkpoint names, by dotted name, with what each resolves to.

    Returns:
        dict: torch's tensor rebuild functions, dtypes, layouts, memory formats, quantisation schemes,
        ``torch.Size``, ``torch.device`` and storage classes; plain containers; numpy arrays, dtypes and
        scalars; and the stand-ins: ``HistoryBuffer`` -> :class:`HistoryBufferStandIn`,
        ``builtins.getattr`` -> :func:`pickled_attribute`, ``numpy.dtype`` -> :func:`numpy_dtype`.
    """
    allowed = {f'torch._utils.{name}': getattr(torch._utils, name)
               for name in _TENSOR_REBUILD_FUNCTIONS if hasattr(torch._utils, name)}
    for name, value in vars(torch).items():
        if isinstance(value, (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)):
            allowed[f'torch.{name}'] = value
    for storage in torch._storage_classes:
        allowed[f'torch.{storage.__name__}'] = allowed[f'{storage.__module__}.{storage.__name__}'] = storage
    allowed.update({
        'torch.Size': torch.Size, 'torch.device': torch.device,
        'torch.serialization._get_layout': torch.serialization._get_layout,
        # MultiStepLR's milestones; Counter(dict) is REDUCE'd, never BUILT.
        'collections.OrderedDict': collections.OrderedDict, 'collections.Counter': collections.Counter,
        'builtins.set': set, 'builtins.frozenset': frozenset,
        'builtins.complex': complex, 'builtins.bytearray': bytearray, 'builtins.slice': slice,
        '_codecs.encode': codecs.encode,  # how protocol 2 pickles bytes
        'numpy.ndarray': np.ndarray, 'numpy.dtype': numpy_dtype,
        _HISTORY_BUFFER_GLOBAL: HistoryBufferStandIn,
        'builtins.getattr': pickled_attribute, ONE_CYCLE.dotted: ONE_CYCLE,
    })
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    for module in _NUMPY_MULTIARRAY_MODULES:
        allowed[f'{module}._reconstruct'] = multiarray._reconstruct
        allowed[f'{module}.scalar'] = multiarray.scalar
    return allowed


# BUILD sets the state of the object on top of the stack: only the objects unpickling created.
_BUILDABLE = (HistoryBufferStandIn, np.ndarray, np.dtype, collections.OrderedDict)


class AllowlistUnpickler(pickle._Unpickler):
    """An unpickler that resolves only :func:`allowed_globals` and builds only :data:`_BUILDABLE` objects.

    The pure-Python unpickler, because its opcode table can be extended: the C one offers no hook for
    ``BUILD``. A checkpoint's pickle holds only the structure (tensor data are separate records), so its
    speed does not matter.
    """
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # protocol 2 (torch.save's) spells Python 2's names
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        dotted = f'{module}.{name}'
        if dotted not in allowed_globals():
            raise RefusedContent(f"it holds the pickled global '{dotted}', {_NOT_AMONG}", dotted)
        return allowed_globals()[dotted]

    def load_build(self) -> None:
        target = self.stack[-2]  # below the state that BUILD pops
        if not isinstance(target, _BUILDABLE):
            raise RefusedContent(f'it sets the state of {_named(target)}, {_NOT_AMONG}', _named(target))
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


#: What ``torch.load`` takes as ``pickle_module``: it derives its unpickler from ``Unpickler``, and reads a
#: legacy file's header with ``load``.
ALLOWLIST_PICKLE = types.ModuleType('ghm_mmdet_allowlist_pickle')
ALLOWLIST_PICKLE.Unpickler = AllowlistUnpickler
ALLOWLIST_PICKLE.load = lambda file, **kwargs: AllowlistUnpickler(file, **kwargs).load()


def _describe(f: Any) -> str:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    name = getattr(f, 'name', None)
    return name if isinstance(name, str) else '<in-memory checkpoint>'


def load_checkpoint_safely(checkpoint_file: Any, map_location: Any = None, source: Optional[str] = None) -> Any:
    """``torch.load(checkpoint_file, map_location)`` through :class:`AllowlistUnpickler`.

    Loading changes nothing outside the returned object: no code named by the file runs, and its
    ``HistoryBuffer`` objects are restored without touching the ``HistoryBuffer`` class.

    Args:
        checkpoint_file: a path or a file-like object, as for ``torch.load``.
        map_location: as for ``torch.load``.
        source: the name for the errors (default: the path, or the file object's name).

    Returns:
        The unpickled checkpoint (usually a dict with ``state_dict``, ``meta``, ``optimizer``...).

    Raises:
        UnsafeCheckpointError: the file holds a global outside the allowlist, or a ``HistoryBuffer`` state
            mmengine does not write; nothing from it ran.
        UnreadableCheckpointError: the file is truncated or not a ``torch.save`` file.
        FileNotFoundError: ``checkpoint_file`` is a path that does not exist.
    """
    source = _describe(checkpoint_file) if source is None else source
    try:
        # weights_only=False hands unpickling to pickle_module; the allowlist is the unpickler's.
        # torch.serialization.load is torch.load, which _through_allowlist replaces during a loader's call.
        return torch.serialization.load(checkpoint_file, map_location=map_location, pickle_module=ALLOWLIST_PICKLE,
                          weights_only=False)
    except RefusedContent as error:
        raise UnsafeCheckpointError(f'refusing to load checkpoint {source}: {error}', checkpoint=source,
                                    refused_global=error.refused_global) from None
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError) as error:
        # torch's zip reader on a truncated file, or its legacy reader on something not a checkpoint
        # (Python 3.8's unpickler raises KeyError for an unknown opcode).
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, RuntimeError) and 'PytorchStreamReader' not in first_line:
            raise
        raise UnreadableCheckpointError(
            f'checkpoint file {source} is not a readable torch checkpoint (truncated, or not written by '
            f'torch.save?): {first_line}') from error


def _through_allowlist(loader: Callable) -> Callable:
    """``loader`` (one of mmengine's scheme loaders) with every ``torch.load`` it makes going through
    :func:`load_checkpoint_safely`: mmengine keeps resolving names, downloading and caching; we unpickle."""
    if getattr(loader, 'through_allowlist', False):
        return loader

    @functools.wraps(loader)
    def load(filename: str, map_location: Any = None) -> Any:
        torch_load = torch.load

        def allowlisted_load(f: Any, map_location: Any = None, **kwargs: Any) -> Any:
            # The file's own name (a URL, an open-mmlab:// name...) makes the better error message.
            return load_checkpoint_safely(f, map_location, source=filename if isinstance(f, io.IOBase) else None)

        torch.load = allowlisted_load
        try:
            return loader(filename, map_location)
        finally:
            torch.load = torch_load

    load.through_allowlist = True
    return load


def use_weights_only_loaders() -> None:
    """From now on in this process, every checkpoint mmengine's ``CheckpointLoader`` reads goes through the
    allowlist: ``load_from``, ``--resume``, ``test.py``'s checkpoint, ``init_cfg=dict(type='Pretrained')``.

    Each scheme's own loader (local files, ``http(s)://``, ``torchvision://``, ``open-mmlab://``, ``mmcls://``,
    ``pavi://``, ``s3://``, and any a third party registered) is registered again with
    ``CheckpointLoader.register_scheme(..., force=True)``, wrapped so that its ``torch.load`` is
    :func:`load_checkpoint_safely` for the duration of the call; ``torch.load`` elsewhere is untouched.
    mmengine offers no public way to list the schemes: ``CheckpointLoader._schemes`` is read (tested at both
    corners). Calling it again changes nothing.
    """
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        CheckpointLoader.register_scheme(prefix, _through_allowlist(loader), force=True)
