"""``tools/train.py`` and ``tools/test.py``: the installed mmdet's own tools, plus what they lack.

mmdet ships its tools inside the installed package (``<mmdet>/.mim/tools/train.py``, ``test.py``).
:func:`run_mmdet_tool` runs that file as ``__main__`` with the user's command line, so the options, their help
and the config logic are those of the user's mmdet, whatever its version. Before it runs:

* every checkpoint mmengine's ``CheckpointLoader`` reads goes through the allowlist (:mod:`.checkpoint`);
* on a machine without CUDA, for ``--launcher pytorch|slurm|mpi``, a gloo process group is started and the
  model wrapper becomes :class:`~.dist.CPUDistributedDataParallel`, appended to the command line as
  ``--cfg-options`` (:mod:`.dist`).

A mistake that our own code recognises, without parsing another library's message, ends in one line on stderr
and exit status 1: a refused or unreadable checkpoint, a launcher variable that is missing, an mmdet without its
tools, a GHM argument of the config out of range. Everything else keeps its message and traceback, as mmengine's
and mmdet's own errors do; ``GHM_MMDET_TRACEBACK=1`` keeps the traceback for all.
"""
import argparse
import contextlib
import os
import runpy
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction

from ..core.checks import GHMArgumentError
from .checkpoint import UnreadableCheckpointError, UnsafeCheckpointError, use_weights_only_loaders
from .dist import ToolError, cpu_distributed_options, cpu_process_group

#: Exit status of a tool that stopped on a user mistake (argparse's own usage errors exit with 2).
EXIT_USER_ERROR = 1
DISTRIBUTED_LAUNCHERS = ('pytorch', 'slurm', 'mpi')


def mmdet_tool(name: str) -> Path:
    """The installed mmdet's ``tools/<name>``: ``<mmdet>/.mim/tools/`` of a wheel, or ``tools/`` beside the
    package in a source checkout (an editable install).

    Raises:
        ToolError: neither exists.
    """
    import mmdet
    package = Path(mmdet.__file__).resolve().parent
    candidates = [package / '.mim' / 'tools' / name]
    if (package.parent / 'setup.py').is_file():  # a source checkout, not site-packages
        candidates.append(package.parent / 'tools' / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ToolError(f"the installed mmdet {mmdet.__version__} ({package}) has no tools/{name}: looked for "
                    f"{' and '.join(map(str, candidates))}. Install mmdet from its wheel (pip install "
                    f"'mmdet=={mmdet.__version__}'), whose .mim/tools/ holds its tools, or install the source "
                    "checkout with its tools/ folder in place")


def _distributed_cpu_config(argv: Sequence[str]) -> Optional[tuple]:
    """``(launcher, config)`` when ``argv`` asks for a distributed run on a machine without CUDA, else None.

    Reads only the config path, ``--launcher`` and ``--cfg-options`` (mmdet's tool parses the command line
    itself, ``--help`` included); the config, with the options merged, says which DDP settings to keep.
    """
    if torch.cuda.is_available():
        return None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('config', nargs='?')
    parser.add_argument('--launcher')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args, _ = parser.parse_known_args(argv)
    if args.launcher not in DISTRIBUTED_LAUNCHERS or args.config is None or not os.path.isfile(args.config):
        return None  # mmdet's tool reports a bad launcher or config itself
    config = Config.fromfile(args.config)
    if args.cfg_options:
        config.merge_from_dict(args.cfg_options)
    return args.launcher, config


def run_mmdet_tool(name: str, argv: Optional[Sequence[str]] = None) -> None:
    """Run the installed mmdet's ``tools/<name>`` (``'train.py'`` or ``'test.py'``) with ``argv`` (default:
    ``sys.argv[1:]``), with weights-only checkpoint loading and, without CUDA, CPU distributed runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with one_line_errors(name):
        script = mmdet_tool(name)
        use_weights_only_loaders()
        distributed = _distributed_cpu_config(argv)
        if distributed is None:
            _run(script, argv)
            return
        launcher, config = distributed
        with cpu_process_group(launcher, config):
            _run(script, [*argv, '--cfg-options', *cpu_distributed_options(config)])


def _run(script: Path, argv: List[str]) -> None:
    saved = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name='__main__')
    finally:
        sys.argv = saved


def user_mistake(error: BaseException) -> Optional[str]:
    """The one line for a mistake that is certainly the user's, or ``None``: our own errors, and a
    :class:`GHMArgumentError` raised while a module is built from the config (later, on tensors, it may be a
    head's bug and keeps its traceback)."""
    if isinstance(error, (ToolError, UnsafeCheckpointError, UnreadableCheckpointError)):
        return str(error).split('\n', 1)[0]
    if isinstance(error, GHMArgumentError):
        built, frame = None, error.__traceback__
        while frame is not None:  # the innermost __init__ on the traceback
            if frame.tb_frame.f_code.co_name == '__init__' and 'self' in frame.tb_frame.f_locals:
                built = type(frame.tb_frame.f_locals['self']).__name__
            frame = frame.tb_next
        return f'{built} in the config: {str(error).splitlines()[0]}' if built else None
    return None


@contextlib.contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Print ``'<prog>: error: <line>'`` and exit with :data:`EXIT_USER_ERROR` for :func:`user_mistake`."""
    try:
        yield
    except Exception as error:  # noqa: BLE001  (filtered by user_mistake; the rest is re-raised)
        line = user_mistake(error)
        if line is None or os.environ.get('GHM_MMDET_TRACEBACK') == '1':
            raise
        print(f'{prog}: error: {line}', file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
