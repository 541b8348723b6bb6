"""Turning the usual user mistakes into one plain sentence instead of a traceback from deep inside mmengine.

Only mistakes a user can fix are translated: a file that does not exist (config, checkpoint, dataset), a
config that does not load (reported by :func:`.config.load_config` as a :class:`ToolError`), a ``type=`` or
argument name the registry does not know, a config value a constructor's argument check rejects
(``... must be ...``), a refused or unreadable checkpoint.
Anything else is a bug and keeps its traceback. ``GHM_MMDET_TRACEBACK=1`` keeps the traceback for all.
"""
import contextlib
import os
import re
import sys
from typing import Iterator, Optional

from .checkpoint import UnreadableCheckpointError, UnsafeCheckpointError

#: Exit status of a tool that stopped on a user mistake (argparse's own usage errors exit with 2).
EXIT_USER_ERROR = 1

_MISSING_FILE = (
    re.compile(r"No such file or directory: '([^']+)'"),
    re.compile(r'(\S+) can not be found\.'),  # mmengine's load_from_local
    re.compile(r'file "([^"]+)" does not exist'),  # mmengine's check_file_exist
)
_UNREGISTERED = re.compile(r'^(\S+) is not in the (\S+) registry')
# mmcv 1.x's build_from_cfg re-raised type(e)(f'class `X` in file: {e}'), once per level of nesting;
# mmengine 0.10.7 does not, but configs and plugins written for the older builders still do.
_BUILD_PREFIX = re.compile(r'^class `(\w+)` in \S+: ')
_BAD_ARGUMENT = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")
_MISSING_ARGUMENT = re.compile(r"(\w+)\.__init__\(\) missing \d+ required (?:positional |keyword-only )?"
                               r"arguments?: (.+)")


class ToolError(Exception):
    """A mistake the user can fix; its message is the one sentence a tool prints."""


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
    """The message under mmengine's build prefixes, and the innermost class being built (or None)."""
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


def explain(error: BaseException, config: Optional[str] = None) -> Optional[str]:
    """One sentence for a mistake a user can fix, or ``None`` when ``error`` looks like a bug.

    Args:
        error: the exception a tool stopped on.
        config (str, optional): the config file the tool ran, named in the sentence where it is the cause.

    Returns:
        str or None: the sentence, without the tool's name and without a trailing newline.
    """
    in_config = f' in config {config}' if config else ''
    text, built = _unwrap_builds(_message(error))
    if isinstance(error, (ToolError, UnsafeCheckpointError, UnreadableCheckpointError)):
        return text.split('\n', 1)[0]
    if isinstance(error, FileNotFoundError):
        path = _missing_path(error)
        if path is None:
            return None
        if path.endswith(('.pth', '.pt', '.ckpt', '.bin')):
            return f'checkpoint file {path} does not exist'
        return (f'file {path} does not exist (check the dataset paths data_root, ann_file and '
                f'data_prefix{in_config})')
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
    if isinstance(error, (ValueError, TypeError)) and ' must ' in text:
        # A constructor's argument check ('bins must be an int >= 1, got 0') on a value from the config.
        built = built or _constructing(error)
        if built is not None:
            return f'{built}{in_config}: {text.splitlines()[0]}'
    return None


@contextlib.contextmanager
def plain_failures(prog: str, config: Optional[str] = None) -> Iterator[None]:
    """Print ``'<prog>: error: <sentence>'`` and exit with :data:`EXIT_USER_ERROR` on a user mistake.

    Errors :func:`explain` does not recognise propagate with their traceback, and so does every error
    when the environment variable ``GHM_MMDET_TRACEBACK`` is set to ``1``.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001  (filtered by explain; the rest is re-raised)
        sentence = explain(error, config)
        if sentence is None or os.environ.get('GHM_MMDET_TRACEBACK') == '1':
            raise
        print(f'{prog}: error: {sentence}', file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
