"""What ``tools/train.py`` and ``tools/test.py`` run: mmdet 3.3's command lines, plus weights-only checkpoint
loading with an explicit allowlist, scoped to checkpoint loading (:mod:`.checkpoint`), gloo process groups on
machines without CUDA (:mod:`.dist`) and one-sentence failures for user mistakes (:mod:`.errors`)."""
from .checkpoint import (UnreadableCheckpointError, UnsafeCheckpointError, load_checkpoint_safely,
                         weights_only_checkpoint_loaders)
from .cli import build_test_parser, build_train_parser, run_test, run_train
from .config import configure_testing, configure_training, load_config
from .dist import distributed_env, init_cpu_distributed
from .errors import ToolError, UserInputs, explain, plain_failures

__all__ = [
    'UnreadableCheckpointError', 'UnsafeCheckpointError', 'load_checkpoint_safely',
    'weights_only_checkpoint_loaders', 'build_test_parser', 'build_train_parser', 'run_test', 'run_train',
    'configure_testing', 'configure_training', 'load_config', 'distributed_env', 'init_cpu_distributed',
    'ToolError', 'UserInputs', 'explain', 'plain_failures',
]
