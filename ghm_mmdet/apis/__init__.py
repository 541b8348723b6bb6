"""What ``tools/train.py`` and ``tools/test.py`` add to the installed mmdet's own tools: weights-only checkpoint
loading through an allowlist (:mod:`.checkpoint`) and CPU distributed runs (:mod:`.dist`), around mmdet's
``.mim/tools`` (:mod:`.mmdet_tools`)."""
from .checkpoint import (
                         UnreadableCheckpointError,
                         UnsafeCheckpointError,
                         load_checkpoint_safely,
                         use_weights_only_loaders,
)
from .dist import CPUDistributedDataParallel, ToolError, cpu_distributed_options, cpu_process_group, distributed_env
from .mmdet_tools import mmdet_tool, one_line_errors, run_mmdet_tool

__all__ = [
    'UnreadableCheckpointError', 'UnsafeCheckpointError', 'load_checkpoint_safely', 'use_weights_only_loaders',
    'CPUDistributedDataParallel', 'ToolError', 'cpu_distributed_options', 'cpu_process_group', 'distributed_env',
    'mmdet_tool', 'one_line_errors', 'run_mmdet_tool'
]
