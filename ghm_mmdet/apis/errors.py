"""Turning the mistakes that are certainly the user's into one plain sentence; everything else is a bug.

Translated into one line:

* a config, checkpoint or dataset path the user named that does not exist: the missing path must be one the
  config names (``load_from``, which also holds ``--resume`` and ``test.py``'s checkpoint argument, an
  ``init_cfg`` checkpoint, ``data_root``, ``ann_file``, ``data_prefix``...) or lie under such a dataset path;
  a missing ``scontrol`` or any other path the user did not name keeps its traceback;
* a config that does not load, and the other checks of :mod:`.config` (:class:`ToolError`);
* a ``type=`` the registry does not know, an argument name a constructor does not take, a required argument
  the config leaves out;
* a value our own argument checks reject (:class:`ghm_mmdet.core.checks.GHMArgumentError`) while a module
  is built from the config; the same error raised later, on tensors, keeps its traceback;
* a refused or unreadable checkpoint.

Anything else keeps its traceback, including a ``ValueError('... must ...')`` from someone else's
constructor. ``GHM_MMDET_TRACEBACK=1`` keeps the traceback for all.
"""
import contextlib
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional

from ..core.checks import GHMArgumentError
from .checkpoint import UnreadableCheckpointError, UnsafeCheckpointError

#: Exit status of a tool that stopped on a user mistake (argparse's own usage errors exit with 2).
EXIT_USER_ERROR = 1

#: Config keys whose string values (anywhere below them) name checkpoints.
CHECKPOINT_KEYS = ('load_from', 'checkpoint', 'pretrained')
#: Config keys whose string values (anywhere below them) name dataset files or directories.
DATASET_KEYS = ('data_root', 'ann_file', 'data_prefix', 'img_path', 'seg_map_path', 'proposal_file')

_MISSING_FILE = (
    re.compile(r"No such file or directory: '([^']+)'"),
    re.compile(r'(\S+) can not be found\.'),  # mmengine's load_from_local
    re.compile(r'file "([^"]+)" does not exist'),  # mmengine's check_file_exist
)
_UNREGISTERED = re.compile(r'^(\S+) is not in the (\S+) registry')
# mmcv 1.x's build_from_cfg re-raised type(e)(f'class `X` in file: {e}'), once per level of nesting;
# mmengine 0.10.7 re-raises nothing, but plugins written for the older builders still do.
_BUILD_PREFIX = re.compile(r'^class `(\w+)` in \S+: ')
_BAD_ARGUMENT = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")
_MISSING_ARGUMENT = re.compile(r"(\w+)\.__init__\(\) missing \d+ required (?:positional |keyword-only )?"
                               r"arguments?: (.+)")


class ToolError(Exception):
    """A mistake the user can fix; its message is the one sentence a tool prints."""


def _normalise(path: str) -> str:
    return osp.abspath(osp.expanduser(path))


def _strings_below(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings_below(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings_below(item)


def named_paths(config: Any) -> Dict[str, str]:
    """The paths a config names, normalised, each with its role: ``'checkpoint'`` or ``'dataset'``.

    Args:
        config: a ``Config`` or any nest of mappings and lists. A string value of a key in
            :data:`CHECKPOINT_KEYS`, and every string below a key in :data:`DATASET_KEYS` (``data_prefix``
            is a dict), count, at any depth.

    Returns:
        dict: absolute path -> role. A path named both ways is a checkpoint.
    """
    checkpoints, datasets = [], []

    def visit(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in CHECKPOINT_KEYS and isinstance(value, str):
                    checkpoints.append(value)
                elif key in DATASET_KEYS:
                    datasets.extend(_strings_below(value))
                else:
                    visit(value)
        elif isinstance(node, (list, tuple)):
            for item in node:
                visit(item)

    # mmengine's Config is no Mapping; its items() are those of the dict it wraps.
    visit(dict(config.items()) if not isinstance(config, Mapping) and hasattr(config, 'items') else config)
    roles = {_normalise(path): 'dataset' for path in datasets if path}
    roles.update({_normalise(path): 'checkpoint' for path in checkpoints if path})
    return roles


@dataclass
class UserInputs:
    """What the user named for one tool run; a path in it that does not exist is the user's mistake.

    Attributes:
        config_file (str, optional): the config file given on the command line.
        config: the run's config once it is loaded and the command line is applied to it (so that
            ``load_from`` holds ``--resume`` or ``test.py``'s checkpoint); ``None`` before.
    """
    config_file: Optional[str] = None
    config: Any = None

    def role_of(self, path: str) -> Optional[str]:
        """``'checkpoint'`` or ``'dataset'`` if the config names ``path`` (or, for a dataset path, a
        directory above it), else ``None``."""
        if self.config is None:
            return None
        named = named_paths(self.config)
        candidate = _normalise(path)
        if candidate in named:
            return named[candidate]
        # '' or '.' as a data_root would put every relative path "under" it; they name no directory.
        too_wide = {_normalise(os.curdir), osp.abspath(os.sep)}
        for name, role in named.items():
            if role == 'dataset' and name not in too_wide and candidate.startswith(name.rstrip(os.sep) + os.sep):
                return role
        return None


def _message(error: BaseException) -> str:
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return str(text)


def _missing_path(error: BaseException) -> Optional[str]:
    filename = getattr(error, 'filename', None)
    if filename:
        return os.fspath(filename)
    for pattern in _MISSING_FILE:
        match = pattern.search(str(error))
        if match:
            return match.group(1)
    return None


def _unwrap_builds(text: str):
    """The message under build prefixes, and the innermost class being built (or None)."""
    built = None
    match = _BUILD_PREFIX.match(text)
    while match:
        built, text = match.group(1), text[match.end():]
        match = _BUILD_PREFIX.match(text)
    return text, built


def _constructing(error: BaseException) -> Optional[str]:
    """The class whose ``__init__`` raised ``error`` (the innermost one on its traceback), if any."""
    built, tb = None, error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == '__init__' and 'self' in frame.f_locals:
            built = type(frame.f_locals['self']).__name__
        tb = tb.tb_next
    return built


def _explain_missing_file(error: FileNotFoundError, inputs: UserInputs, in_config: str) -> Optional[str]:
    path = _missing_path(error)
    role = inputs.role_of(path) if path else None
    if role == 'checkpoint':
        return f'checkpoint file {path} does not exist'
    if role == 'dataset':
        return (f'file {path} does not exist (check the dataset paths data_root, ann_file and '
                f'data_prefix{in_config})')
    return None


def explain(error: BaseException, inputs: Optional[UserInputs] = None) -> Optional[str]:
    """One sentence for a mistake that is certainly the user's, or ``None`` for anything else.

    Args:
        error: the exception a tool stopped on.
        inputs (UserInputs, optional): what the user named; without a loaded config no missing file is
            the user's.

    Returns:
        str or None: the sentence, without the tool's name and without a trailing newline.
    """
    inputs = inputs or UserInputs()
    in_config = f' in config {inputs.config_file}' if inputs.config_file else ''
    text, built = _unwrap_builds(_message(error))
    if isinstance(error, (ToolError, UnsafeCheckpointError, UnreadableCheckpointError)):
        return text.split('\n', 1)[0]
    if isinstance(error, GHMArgumentError):
        # Only while building from the config is the rejected value certainly one the user wrote.
        built = built or _constructing(error)
        return f'{built}{in_config}: {text.splitlines()[0]}' if built else None
    if isinstance(error, FileNotFoundError):
        return _explain_missing_file(error, inputs, in_config)
    if isinstance(error, KeyError):
        match = _UNREGISTERED.match(_message(error))
        if match:
            name, registry = match.groups()
            return (f"type='{name}'{in_config} is not a registered {registry} type "
                    '(a typo, or a missing custom_imports?)')
    if isinstance(error, TypeError):
        match = _BAD_ARGUMENT.search(text)
        if match:
            cls, key = match.groups()
            return f"{cls} does not take the argument '{key}' given{in_config} (a typo in that key?)"
        match = _MISSING_ARGUMENT.search(text)
        if match:
            cls, names = match.groups()
            return f'{cls} needs the argument(s) {names}, missing{in_config}'
    return None


@contextlib.contextmanager
def plain_failures(prog: str, config_file: Optional[str] = None) -> Iterator[UserInputs]:
    """Print ``'<prog>: error: <sentence>'`` and exit with :data:`EXIT_USER_ERROR` on a user mistake.

    Yields:
        UserInputs: set its ``config`` once the config is loaded, so that a missing path it names is
        reported as the user's.

    Errors :func:`explain` does not recognise propagate with their traceback, and so does every error
    when the environment variable ``GHM_MMDET_TRACEBACK`` is set to ``1``.
    """
    inputs = UserInputs(config_file=config_file)
    try:
        yield inputs
    except Exception as error:  # noqa: BLE001  (filtered by explain; the rest is re-raised)
        sentence = explain(error, inputs)
        if sentence is None or os.environ.get('GHM_MMDET_TRACEBACK') == '1':
            raise
        print(f'{prog}: error: {sentence}', file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
