"""Loading mmengine/mmdet checkpoints with an allowlist, on every supported torch, changing nothing but the result.

An mmengine checkpoint holds more than tensors: ``message_hub.log_scalars`` holds
:class:`mmengine.logging.HistoryBuffer` objects with numpy arrays, ``runtime_info`` numpy scalars, and a
``HistoryBuffer`` of mmengine >= 0.8 pickles its statistics functions as ``getattr(HistoryBuffer, 'min')``.
torch >= 2.6 refuses all of that by default (``weights_only=True``), so mmdet's own ``test.py`` and
``--resume`` fail on every checkpoint they wrote; ``weights_only=False`` would run whatever a file names.

The mechanism: ``torch.load(f, weights_only=False, pickle_module=...)`` with our own unpickler, whose
``find_class`` resolves only :func:`allowed_globals` and whose ``BUILD`` sets state only on the objects
a checkpoint legitimately restores. We chose it over torch's ``weights_only`` allowlist
(``torch.serialization.safe_globals``) because

* every torch we support accepts a ``pickle_module`` (``safe_globals`` needs torch >= 2.5), so one code path
  serves the whole range with no version check;
* the allowlist is ours and per call, so nothing process-wide is edited (no lock, nothing to undo) and a
  refused global raises our :class:`UnsafeCheckpointError` directly, with no parsing of torch's messages;
* it is stricter: ``BUILD`` on anything else (a function, a class, a cached numpy dtype) is refused, where
  torch's allowlist would let a file set attributes on the allowlisted objects themselves.

Tensors are rebuilt by torch's own functions and storages by torch's own ``persistent_load``, which torch
keeps in the unpickler it derives from ours. Two stand-ins keep class-level state out of the file's reach:

* ``HistoryBuffer`` is built by :class:`HistoryBufferStandIn`. mmengine's ``HistoryBuffer.__setstate__``
  merges the pickled ``statistics_methods`` into the class attribute ``HistoryBuffer._statistics_methods``,
  which every buffer of the process shares: a file could choose the function that computes ``mean`` for
  all of them. The stand-in checks the state against what mmengine writes and sets only the instance's
  ``max_length``, ``_log_history`` and ``_count_history``.
* ``getattr`` is :func:`history_buffer_statistic`, which resolves only the four statistics on
  ``HistoryBuffer``, so allowlisting it gives a pickle no general attribute access.

A checkpoint holding any other global, or a ``HistoryBuffer`` state that mmengine does not write, is refused
with an :class:`UnsafeCheckpointError` naming the file; nothing falls back to unpickling everything.

:func:`weights_only_checkpoint_loaders` applies this to checkpoint loading only: for the block, it registers
loaders for every scheme of mmengine's ``CheckpointLoader`` (local files, ``http(s)://``,
``torchvision://``, ``open-mmlab://``, ``mmcls://``, ``pavi://``, ``s3://``), through which
``Runner.load_checkpoint``, ``Runner.resume``, ``load_from``, ``init_cfg=dict(type='Pretrained')`` and
``CheckpointHook`` read. ``torch.load`` itself is left alone, so other code of the run keeps its own
``weights_only`` choice.

mmengine has no public API to list or restore its scheme loaders, nor to resolve ``$MMENGINE_HOME`` or strip
an mmcls checkpoint: :data:`_MMENGINE_PRIVATE` names the three private helpers used, and
``tests/apis/test_safe_checkpoint.py`` tests the behaviour relied on at both tested corners.
"""
import _compat_pickle
import collections
import codecs
import contextlib
import functools
import io
import os
import os.path as osp
import pickle
import re
import types
from tempfile import TemporaryDirectory
from typing import Any, Callable, Dict, Iterator, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import (CheckpointLoader, _get_mmengine_home, _process_mmcls_checkpoint,
                                        get_deprecated_model_names, get_external_models, get_mmcls_models,
                                        get_torchvision_models)

#: The private mmengine helpers this module relies on (no public equivalent exists).
_MMENGINE_PRIVATE = ('CheckpointLoader._schemes', '_get_mmengine_home', '_process_mmcls_checkpoint')

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


def history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer.<statistic>`` resolves.

    Args:
        owner: ``HistoryBuffer`` as the pickle names it, i.e. :class:`HistoryBufferStandIn` (or
            ``HistoryBuffer`` itself).
        name (str): one of :data:`HISTORY_BUFFER_STATISTICS`.

    Returns:
        The unbound function ``HistoryBuffer.<name>``.

    Raises:
        RefusedContent: for any other object or attribute name.
    """
    if owner not in (HistoryBufferStandIn, HistoryBuffer) or name not in HISTORY_BUFFER_STATISTICS:
        owner_name = 'HistoryBuffer' if owner is HistoryBufferStandIn else getattr(
            owner, '__name__', type(owner).__name__)
        raise RefusedContent(
            f"it holds the pickled global 'builtins.getattr' fetching {owner_name}.{name}, {_NOT_AMONG}",
            'builtins.getattr')
    return getattr(HistoryBuffer, name)


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
        ``builtins.getattr`` -> :func:`history_buffer_statistic`, ``numpy.dtype`` -> :func:`numpy_dtype`.
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
        'collections.OrderedDict': collections.OrderedDict, 'builtins.set': set, 'builtins.frozenset': frozenset,
        'builtins.complex': complex, 'builtins.bytearray': bytearray, 'builtins.slice': slice,
        '_codecs.encode': codecs.encode,  # how protocol 2 pickles bytes
        'numpy.ndarray': np.ndarray, 'numpy.dtype': numpy_dtype,
        _HISTORY_BUFFER_GLOBAL: HistoryBufferStandIn,
        'builtins.getattr': history_buffer_statistic,
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
        return torch.load(checkpoint_file, map_location=map_location, pickle_module=ALLOWLIST_PICKLE,
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


# The loaders registered by weights_only_checkpoint_loaders(): mmengine's, each loading through
# load_checkpoint_safely. They keep mmengine's names because CheckpointLoader logs 'Loads checkpoint by
# {name[10:]} backend'.

def load_from_local(filename: str, map_location: Any = None) -> Any:
    """A local file, as mmengine's ``load_from_local``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_safely(filename, map_location)


def _load_url(url: str, map_location: Any, model_dir: Optional[str], progress: bool) -> Any:
    # torch.hub's cache directory and download, as load_state_dict_from_url, then our loader.
    model_dir = osp.join(torch.hub.get_dir(), 'checkpoints') if model_dir is None else model_dir
    os.makedirs(model_dir, exist_ok=True)
    cached_file = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached_file):
        torch.hub.download_url_to_file(url, cached_file, progress=progress)
    return load_checkpoint_safely(cached_file, map_location, source=url)


def load_from_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None,
                   progress: Optional[bool] = None) -> Any:
    """An ``http(s)://`` URL, cached by ``torch.hub``; rank 0 downloads first, as mmengine's loader."""
    progress = os.isatty(0) if progress is None else progress
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = _load_url(filename, map_location, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = _load_url(filename, map_location, model_dir, progress)
    return checkpoint


def load_from_torchvision(filename: str, map_location: Any = None) -> Any:
    """``torchvision://NAME`` (or the deprecated ``modelzoo://NAME``): torchvision's URL for NAME."""
    return load_from_http(get_torchvision_models()[filename.split('://', 1)[1]], map_location)


def load_from_openmmlab(filename: str, map_location: Any = None) -> Any:
    """``open-mmlab://NAME``: the URL (or the file under ``$MMENGINE_HOME``) mmengine's model list gives."""
    name = filename.split('://', 1)[1]
    name = get_deprecated_model_names().get(name, name)
    model_url = get_external_models()[name]
    if model_url.startswith(('http://', 'https://')):
        return load_from_http(model_url, map_location)
    return load_from_local(osp.join(_get_mmengine_home(), model_url), map_location)


def load_from_mmcls(filename: str, map_location: Any = None) -> Any:
    """``mmcls://NAME``: an mmcls backbone, with its keys stripped of ``backbone.`` as mmengine does."""
    checkpoint = load_from_http(get_mmcls_models()[filename[len('mmcls://'):]], map_location)
    return _process_mmcls_checkpoint(checkpoint)


def load_from_pavi(filename: str, map_location: Any = None) -> Any:
    """``pavi://PATH``: downloaded from pavi's model cloud to a temporary file."""
    try:
        from pavi import modelcloud
    except ImportError as error:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from error
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded_file = osp.join(tmp_dir, model.name)
        model.download(downloaded_file)
        return load_checkpoint_safely(downloaded_file, map_location, source=filename)


def load_from_ceph(filename: str, map_location: Any = None, backend: str = 'petrel') -> Any:
    """``s3://`` or ``petrel://``, read through mmengine's file backend."""
    file_backend = get_file_backend(filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return load_checkpoint_safely(buffer, map_location, source=filename)


#: Every scheme prefix of mmengine's ``CheckpointLoader``, with its weights-only loader.
WEIGHTS_ONLY_LOADERS: Dict[str, Callable] = {
    '': load_from_local,
    'http://': load_from_http,
    'https://': load_from_http,
    'modelzoo://': load_from_torchvision,
    'torchvision://': load_from_torchvision,
    'open-mmlab://': load_from_openmmlab,
    'openmmlab://': load_from_openmmlab,
    'mmcls://': load_from_mmcls,
    'pavi://': load_from_pavi,
    r'(\S+\:)?s3://': load_from_ceph,
    r'(\S+\:)?petrel://': load_from_ceph,
}


@contextlib.contextmanager
def weights_only_checkpoint_loaders() -> Iterator[None]:
    """In this block, mmengine's ``CheckpointLoader`` loads every checkpoint as
    :func:`load_checkpoint_safely` does.

    Registers :data:`WEIGHTS_ONLY_LOADERS` with ``CheckpointLoader.register_scheme(force=True)``: that is
    how ``Runner.load_checkpoint``, ``Runner.resume``, ``load_from``, ``init_cfg=dict(type='Pretrained')``
    and ``CheckpointHook`` read checkpoints. ``torch.load`` is not touched, so a
    ``torch.load(f, weights_only=False)`` elsewhere in the block keeps its meaning. A scheme registered by
    a third party under another prefix keeps its own loader.

    On exit every prefix gets back the loader it had before, unless it was registered again inside the
    block, in which case that registration stays. Re-entrant.
    """
    previous = dict(CheckpointLoader._schemes)
    for prefix, loader in WEIGHTS_ONLY_LOADERS.items():
        CheckpointLoader.register_scheme(prefix, loader, force=True)
    try:
        yield
    finally:
        for prefix, loader in WEIGHTS_ONLY_LOADERS.items():
            if CheckpointLoader._schemes.get(prefix) is not loader:
                continue
            if prefix in previous:
                CheckpointLoader.register_scheme(prefix, previous[prefix], force=True)
            else:
                del CheckpointLoader._schemes[prefix]


def is_local_path(path: str) -> bool:
    """Whether mmengine's ``CheckpointLoader`` would read ``path`` from the local file system."""
    return re.match(r'^[a-zA-Z][\w+.-]*://', str(path)) is None
