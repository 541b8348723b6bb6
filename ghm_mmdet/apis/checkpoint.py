"""Loading mmengine/mmdet checkpoints weights-only, with an explicit allowlist, changing nothing but the result.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles only tensors, containers and
plain Python values, plus the globals a caller allowlists. An mmengine 0.10.7 checkpoint holds more than
that, so mmdet 3.3's own ``test.py`` and ``--resume`` fail on every checkpoint they wrote:

* ``message_hub.log_scalars`` holds :class:`mmengine.logging.HistoryBuffer` objects, which hold numpy arrays
  (``numpy.ndarray``, ``numpy.dtype`` with its per-type classes, ``numpy._core.multiarray._reconstruct``);
* ``message_hub.runtime_info`` holds numpy scalars (``eta``, ``best_score``:
  ``numpy._core.multiarray.scalar``);
* a ``HistoryBuffer`` also pickles its statistics functions (``HistoryBuffer.min`` and so on), which pickle
  writes as ``builtins.getattr(HistoryBuffer, 'min')``.

:func:`checkpoint_safe_globals` lists exactly those, with two stand-ins, so that loading a checkpoint changes
nothing outside the object it returns:

* ``HistoryBuffer`` is built by :class:`HistoryBufferStandIn`. mmengine's ``HistoryBuffer.__setstate__``
  merges the pickled ``statistics_methods`` into the class attribute ``HistoryBuffer._statistics_methods``,
  which every buffer of the process shares: a file could choose the function that computes ``mean`` for
  all of them. The stand-in checks the state against what ``HistoryBuffer.__getstate__`` writes and sets
  only the instance's ``max_length``, ``_log_history`` and ``_count_history``.
* ``getattr`` is :func:`history_buffer_statistic`, which resolves only the four statistics on
  ``HistoryBuffer``, so allowlisting it gives a pickle no general attribute access.

A checkpoint holding any other global, or a ``HistoryBuffer`` state that mmengine does not write, is refused
with an :class:`UnsafeCheckpointError` naming the file; nothing falls back to ``weights_only=False``.

:func:`weights_only_checkpoint_loaders` applies this to checkpoint loading only: for the block, it registers
weights-only loaders for every scheme of mmengine's ``CheckpointLoader`` (local files, ``http(s)://``,
``torchvision://``, ``open-mmlab://``, ``mmcls://``, ``pavi://``, ``s3://``), through which
``Runner.load_checkpoint``, ``Runner.resume``, ``load_from``, ``init_cfg=dict(type='Pretrained')`` and
``CheckpointHook`` read. ``torch.load`` itself is left alone, so other code of the run keeps its own
``weights_only`` choice.
"""
import _compat_pickle
import contextlib
import importlib
import io
import os
import os.path as osp
import pickle
import re
import threading
from tempfile import TemporaryDirectory
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import (CheckpointLoader, _get_mmengine_home, _process_mmcls_checkpoint,
                                        get_deprecated_model_names, get_external_models, get_mmcls_models,
                                        get_torchvision_models)

#: The statistics ``HistoryBuffer`` registers for itself and pickles as ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
#: The instance attributes a pickled ``HistoryBuffer`` restores (``__getstate__`` adds ``statistics_methods``).
HISTORY_BUFFER_ATTRIBUTES = ('max_length', '_log_history', '_count_history')
_HISTORY_BUFFER_GLOBAL = f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}'

# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; a checkpoint names whichever its writer had.
_NUMPY_MULTIARRAY_MODULES = ('numpy._core.multiarray', 'numpy.core.multiarray')
# Every numeric and boolean dtype: unpickling a dtype builds an instance of its per-type class.
_NUMPY_DTYPE_CHARS = '?bBhHiIlLqQefdgFDG'

_REFUSED_GLOBAL = re.compile(r'GLOBAL ([\w.]+)')
# safe_globals() edits torch's process-wide allowlist; one load at a time keeps threads from undoing it.
_LOAD_LOCK = threading.RLock()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside :func:`checkpoint_safe_globals`, or a ``HistoryBuffer``
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
    """Raised by the stand-ins while unpickling; :func:`load_checkpoint_safely` turns it into an
    :class:`UnsafeCheckpointError` naming the file.

    Not a ``pickle.UnpicklingError``: ``torch.load`` rewraps those into one long generic message.
    """

    def __init__(self, reason: str, refused_global: str):
        super().__init__(reason)
        self.refused_global = refused_global


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
            f"it holds the pickled global 'builtins.getattr' fetching {owner_name}.{name}, which is not among "
            'the types mmengine/mmdet checkpoints contain (loaded with weights_only=True)', 'builtins.getattr')
    return getattr(HistoryBuffer, name)


def _refuse_history_state(problem: str):
    raise RefusedContent(f'its HistoryBuffer state {problem}, which mmengine never writes (loaded with '
                         'weights_only=True)', _HISTORY_BUFFER_GLOBAL)


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
        # Adds mmengine's own four statistics if no HistoryBuffer was built yet, as HistoryBuffer() does;
        # nothing here comes from the file.
        self._set_default_statistics()


def _numpy_multiarray_globals() -> List[Tuple[Callable, str]]:
    try:
        multiarray = importlib.import_module(_NUMPY_MULTIARRAY_MODULES[0])
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module(_NUMPY_MULTIARRAY_MODULES[1])
    return [(getattr(multiarray, func_name), f'{module}.{func_name}')
            for func_name in ('_reconstruct', 'scalar') for module in _NUMPY_MULTIARRAY_MODULES]


def checkpoint_safe_globals() -> List[Union[type, Callable, Tuple[Callable, str]]]:
    """The globals, besides torch's defaults, that mmengine 0.10.7 / mmdet 3.3 checkpoints contain.

    Returns:
        list: entries for ``torch.serialization.safe_globals``: classes, and ``(object, 'dotted.name')``
        pairs for the names a checkpoint spells differently from the object's own (``numpy.core`` vs
        ``numpy._core``) and for the two stand-ins: ``HistoryBuffer`` bound to
        :class:`HistoryBufferStandIn` and ``builtins.getattr`` to :func:`history_buffer_statistic`.
    """
    dtype_classes = sorted({type(np.dtype(char)) for char in _NUMPY_DTYPE_CHARS}, key=lambda c: c.__name__)
    return [
        (HistoryBufferStandIn, _HISTORY_BUFFER_GLOBAL),
        np.ndarray,
        np.dtype,
        *dtype_classes,
        *_numpy_multiarray_globals(),
        (history_buffer_statistic, 'builtins.getattr'),
    ]


def _describe(f: Any) -> str:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    name = getattr(f, 'name', None)
    return name if isinstance(name, str) else '<in-memory checkpoint>'


def _refused_global(message: str) -> Optional[str]:
    match = _REFUSED_GLOBAL.search(message)
    if match:
        # Protocol-2 pickles spell modules the Python 2 way ('commands.call' is subprocess.call), and
        # torch's message drops the 'builtins.' of builtins ('GLOBAL exec').
        module, _, name = match.group(1).rpartition('.')
        return f'{_compat_pickle.IMPORT_MAPPING.get(module, module) or "builtins"}.{name}'
    match = re.search(r'unrecognized function (.+?)(?:$|\n)', message)
    return match.group(1).strip() if match else None


@contextlib.contextmanager
def _weights_only_allowlist(source: str) -> Iterator[None]:
    """Weights-only loads in this block accept :func:`checkpoint_safe_globals`; their failures become
    :class:`UnsafeCheckpointError` or :class:`UnreadableCheckpointError` naming ``source``."""
    if not hasattr(torch.serialization, 'safe_globals'):
        raise RuntimeError(f'loading checkpoint {source} weights-only with an allowlist needs torch >= 2.5, '
                           f'found {torch.__version__}')
    with _LOAD_LOCK, torch.serialization.safe_globals(checkpoint_safe_globals()):
        try:
            yield
        except RefusedContent as error:
            raise UnsafeCheckpointError(f'refusing to load checkpoint {source}: {error}', checkpoint=source,
                                        refused_global=error.refused_global) from None
        except pickle.UnpicklingError as error:
            if isinstance(error, UnsafeCheckpointError):
                raise
            name = _refused_global(str(error))
            what = f"the pickled global '{name}'" if name else 'a pickled object'
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {source}: it holds {what}, which is not among the types '
                'mmengine/mmdet checkpoints contain (loaded with weights_only=True)',
                checkpoint=source, refused_global=name) from None
        except (RuntimeError, EOFError, KeyError) as error:
            # torch's zip reader on a truncated file, or its legacy reader on something not a checkpoint.
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, RuntimeError) and 'PytorchStreamReader' not in first_line:
                raise
            raise UnreadableCheckpointError(
                f'checkpoint file {source} is not a readable torch checkpoint (truncated, or not written by '
                f'torch.save?): {first_line}') from error


def _load_weights_only(f: Any, map_location: Any, source: str) -> Any:
    with _weights_only_allowlist(source):
        return torch.load(f, map_location=map_location, weights_only=True)


def load_checkpoint_safely(checkpoint_file: Any, map_location: Any = None) -> Any:
    """``torch.load(checkpoint_file, map_location, weights_only=True)``, allowing what mmengine checkpoints
    hold (:func:`checkpoint_safe_globals`).

    Loading changes nothing outside the returned object: no code named by the file runs, and its
    ``HistoryBuffer`` objects are restored without touching the ``HistoryBuffer`` class.

    Args:
        checkpoint_file: a path or a file-like object, as for ``torch.load``.
        map_location: as for ``torch.load``.

    Returns:
        The unpickled checkpoint (usually a dict with ``state_dict``, ``meta``, ``optimizer``...).

    Raises:
        UnsafeCheckpointError: the file holds a global outside the allowlist, or a ``HistoryBuffer`` state
            mmengine does not write; nothing from it ran.
        UnreadableCheckpointError: the file is truncated or not a ``torch.save`` file.
        FileNotFoundError: ``checkpoint_file`` is a path that does not exist.
    """
    return _load_weights_only(checkpoint_file, map_location, _describe(checkpoint_file))


# The loaders registered by weights_only_checkpoint_loaders(): mmengine 0.10.7's, with each torch.load made
# weights-only. They keep mmengine's names because CheckpointLoader logs 'Loads checkpoint by
# {name[10:]} backend'.

def load_from_local(filename: str, map_location: Any = None) -> Any:
    """A local file, as mmengine's ``load_from_local``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_safely(filename, map_location)


def _load_url(url: str, map_location: Any, model_dir: Optional[str], progress: bool) -> Any:
    with _weights_only_allowlist(url):
        # torch.hub's cache, hash check and legacy-zip handling, with its torch.load made weights-only.
        return torch.hub.load_state_dict_from_url(url, model_dir=model_dir, map_location=map_location,
                                                  progress=progress, weights_only=True)


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
        return _load_weights_only(downloaded_file, map_location, filename)


def load_from_ceph(filename: str, map_location: Any = None, backend: str = 'petrel') -> Any:
    """``s3://`` or ``petrel://``, read through mmengine's file backend."""
    file_backend = get_file_backend(filename, backend_args={'backend': backend})
    with io.BytesIO(file_backend.get(filename)) as buffer:
        return _load_weights_only(buffer, map_location, filename)


#: Every scheme prefix of mmengine 0.10.7's ``CheckpointLoader``, with its weights-only loader.
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
