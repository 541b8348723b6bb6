"""Loading mmengine/mmdet checkpoints with ``torch.load(weights_only=True)`` and an explicit allowlist.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles only tensors, containers and
plain Python values, plus the globals a caller allowlists. An mmengine 0.10.7 checkpoint holds more than
that, so mmdet 3.3's own ``test.py`` and ``--resume`` fail on every checkpoint they wrote:

* ``message_hub.log_scalars`` holds :class:`mmengine.logging.HistoryBuffer` objects, which hold numpy arrays
  (``numpy.ndarray``, ``numpy.dtype`` with its per-type classes, ``numpy._core.multiarray._reconstruct``);
* ``message_hub.runtime_info`` holds numpy scalars (``eta``, ``best_score``:
  ``numpy._core.multiarray.scalar``);
* a ``HistoryBuffer`` also pickles its statistics functions (``HistoryBuffer.min`` and so on), which pickle
  writes as ``builtins.getattr(HistoryBuffer, 'min')``.

:func:`checkpoint_safe_globals` lists exactly those; ``getattr`` is replaced by
:func:`history_buffer_statistic`, which resolves only those four names on ``HistoryBuffer`` and refuses any
other attribute of any other object, so allowlisting it gives a pickle no general attribute access.

:func:`weights_only_checkpoints` routes every ``torch.load`` made inside it, which includes mmengine's
``CheckpointLoader`` for local files and for ``http(s)://``, ``torchvision://`` and ``open-mmlab://``
(the latter go through ``torch.hub.load_state_dict_from_url``, which passes ``weights_only=False``
explicitly), through :func:`load_checkpoint_safely`. A checkpoint holding any other global is refused with
an :class:`UnsafeCheckpointError` that names the file and the global; nothing falls back to
``weights_only=False``.
"""
import _compat_pickle
import contextlib
import importlib
import os
import pickle
import re
import threading
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

#: The statistics ``HistoryBuffer`` registers for itself and pickles as ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; a checkpoint names whichever its writer had.
_NUMPY_MULTIARRAY_MODULES = ('numpy._core.multiarray', 'numpy.core.multiarray')
# Every numeric and boolean dtype: unpickling a dtype builds an instance of its per-type class.
_NUMPY_DTYPE_CHARS = '?bBhHiIlLqQefdgFDG'

_REFUSED_GLOBAL = re.compile(r'GLOBAL ([\w.]+)')
_GETATTR_TARGET = re.compile(r'may only fetch \S+, not ([\w.]+)')
# safe_globals() edits torch's process-wide allowlist; one load at a time keeps threads from undoing it.
_LOAD_LOCK = threading.RLock()
_ORIGINAL_TORCH_LOAD = torch.load


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside :func:`checkpoint_safe_globals`; it was not loaded.

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


def history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer.<statistic>`` resolves.

    Args:
        owner: must be :class:`mmengine.logging.HistoryBuffer` itself.
        name (str): one of :data:`HISTORY_BUFFER_STATISTICS`.

    Returns:
        The unbound function ``HistoryBuffer.<name>``.

    Raises:
        pickle.UnpicklingError: for any other object or attribute name.
    """
    if owner is not HistoryBuffer or name not in HISTORY_BUFFER_STATISTICS:
        allowed = ','.join(HISTORY_BUFFER_STATISTICS)
        raise pickle.UnpicklingError(
            f'GLOBAL builtins.getattr may only fetch HistoryBuffer.{{{allowed}}}, '
            f'not {getattr(owner, "__name__", type(owner).__name__)}.{name}')
    return getattr(HistoryBuffer, name)


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
        list: entries for ``torch.serialization.safe_globals``: classes and functions, and
        ``(function, 'dotted.name')`` pairs for names a checkpoint spells differently from the object's own
        (``numpy.core`` vs ``numpy._core``, and ``builtins.getattr`` bound to
        :func:`history_buffer_statistic`).
    """
    dtype_classes = sorted({type(np.dtype(char)) for char in _NUMPY_DTYPE_CHARS}, key=lambda c: c.__name__)
    return [
        HistoryBuffer,
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


def load_checkpoint_safely(f: Any, map_location: Any = None, *, weights_only: Optional[bool] = None,
                           **kwargs) -> Any:
    """``torch.load(f, map_location, weights_only=True)`` with :func:`checkpoint_safe_globals` allowed.

    Args:
        f: a path or a file-like object, as for ``torch.load``.
        map_location: as for ``torch.load``.
        weights_only: ignored unless given; whatever a caller asks for, loading is weights-only (mmengine
            and ``torch.hub`` pass ``False`` or nothing without knowing what the file holds).
        **kwargs: passed to ``torch.load`` (``mmap``, ``encoding``); ``pickle_module`` is refused, because
            a custom unpickler cannot be weights-only.

    Returns:
        The unpickled checkpoint (usually a dict with ``state_dict``, ``meta``, ``optimizer``...).

    Raises:
        UnsafeCheckpointError: the file holds a global outside the allowlist; nothing from it ran.
        FileNotFoundError: ``f`` is a path that does not exist.
    """
    del weights_only  # always weights-only; see the docstring
    if kwargs.pop('pickle_module', None) is not None:
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {_describe(f)} with a custom pickle_module, which cannot be '
            'weights-only', checkpoint=_describe(f))
    if not hasattr(torch.serialization, 'safe_globals'):
        raise RuntimeError(f'loading checkpoint {_describe(f)} weights-only with an allowlist needs '
                           f'torch >= 2.5, found {torch.__version__}')
    with _LOAD_LOCK, torch.serialization.safe_globals(checkpoint_safe_globals()):
        try:
            return _ORIGINAL_TORCH_LOAD(f, map_location=map_location, weights_only=True, **kwargs)
        except pickle.UnpicklingError as error:
            if isinstance(error, UnsafeCheckpointError):
                raise
            name = _refused_global(str(error))
            what = f"the pickled global '{name}'" if name else 'a pickled object'
            fetched = _GETATTR_TARGET.search(str(error))
            if fetched:
                what += f' fetching {fetched.group(1)}'
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {_describe(f)}: it holds {what}, which is not among the '
                'types mmengine/mmdet checkpoints contain (loaded with weights_only=True)',
                checkpoint=_describe(f), refused_global=name) from None
        except (RuntimeError, EOFError, KeyError) as error:
            # torch's zip reader on a truncated file, or its legacy reader on something not a checkpoint.
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if isinstance(error, RuntimeError) and 'PytorchStreamReader' not in first_line:
                raise
            raise UnreadableCheckpointError(
                f'checkpoint file {_describe(f)} is not a readable torch checkpoint (truncated, or not '
                f'written by torch.save?): {first_line}') from error


@contextlib.contextmanager
def weights_only_checkpoints() -> Iterator[None]:
    """Inside this block every ``torch.load`` is :func:`load_checkpoint_safely`.

    This is how mmengine's loaders (``Runner.load_checkpoint``, ``Runner.resume``, ``load_from``,
    ``init_cfg=dict(type='Pretrained')``, all ``CheckpointLoader`` schemes) are made weights-only without
    copying them: they look ``torch.load`` up at call time. Re-entrant; restores ``torch.load`` on exit.
    """
    previous = torch.load
    if previous is load_checkpoint_safely:
        yield
        return
    torch.load = load_checkpoint_safely
    try:
        yield
    finally:
        torch.load = previous


def is_local_path(path: str) -> bool:
    """Whether mmengine's ``CheckpointLoader`` would read ``path`` from the local file system."""
    return re.match(r'^[a-zA-Z][\w+.-]*://', str(path)) is None
