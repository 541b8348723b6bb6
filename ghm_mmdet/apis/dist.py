"""Multi-process runs on machines without CUDA: what mmdet's tools need there and mmengine does not do.

* A gloo process group. mmengine's ``init_dist`` calls ``torch.cuda.set_device`` for every launcher; its
  ``Runner`` skips ``init_dist`` when a process group already exists, so :func:`cpu_process_group` starts one
  before mmdet's tool builds the Runner.
* A DDP wrapper for CPU modules. mmengine's ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]``, which DDP
  rejects for a CPU module, and keeps SyncBN layers, which need CUDA in a process group.
  :class:`CPUDistributedDataParallel` takes no ``device_ids`` and turns SyncBN back into BN;
  :func:`cpu_distributed_options` selects it through mmdet's own ``--cfg-options``.

With CUDA nothing here applies: the Runner starts NCCL from ``env_cfg.dist_cfg`` as usual.
"""
import contextlib
import datetime
import gc
import os
import subprocess
from typing import Callable, Dict, Iterator, List, Mapping

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS


class ToolError(Exception):
    """A mistake the user can fix; a tool prints its message as one line."""


DEFAULT_MASTER_PORT = '29500'  # torch.distributed's default, as mmengine uses


def first_slurm_host(node_list: str) -> str:
    """The first host of a Slurm node list such as ``'node[01-04]'``, via ``scontrol show hostnames``."""
    result = subprocess.run(['scontrol', 'show', 'hostnames', node_list], capture_output=True, text=True)
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise ToolError(f'scontrol show hostnames {node_list} failed: {result.stderr.strip() or "no hosts"}')
    return hosts[0]


# launcher -> (variables it must set, who sets them, RANK, WORLD_SIZE, LOCAL_RANK), as mmengine's _init_dist_*.
_LAUNCHER_VARIABLES = {
    'pytorch': (('RANK', 'WORLD_SIZE', 'MASTER_ADDR'), 'torchrun (tools/dist_train.sh, tools/dist_test.sh)',
                'RANK', 'WORLD_SIZE', 'LOCAL_RANK'),
    'slurm': (('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'), 'srun (tools/slurm_train.sh, tools/slurm_test.sh)',
              'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'),
    'mpi': (('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'), 'mpirun (with MASTER_ADDR exported)',
            'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK'),
}


def distributed_env(launcher: str, environ: Mapping[str, str],
                    resolve_host: Callable[[str], str] = first_slurm_host) -> Dict[str, str]:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for ``env://``, derived as
    mmengine's ``_init_dist_pytorch``/``_slurm``/``_mpi`` derive them (Slurm: the first host of
    ``SLURM_NODELIST`` unless ``MASTER_ADDR`` is set; ``MASTER_PORT`` defaults to 29500).

    Raises:
        ToolError: a variable the launcher should have set is missing.
    """
    required, set_by, rank, world_size, local_rank = _LAUNCHER_VARIABLES[launcher]
    missing = [name for name in required if name not in environ]
    if missing:
        raise ToolError(f'--launcher {launcher} needs the environment variables {", ".join(missing)}, '
                        f'which {set_by} sets')
    master_addr = environ.get('MASTER_ADDR') or resolve_host(environ['SLURM_NODELIST'])
    return dict(RANK=environ[rank], WORLD_SIZE=environ[world_size], LOCAL_RANK=environ.get(local_rank, '0'),
                MASTER_ADDR=master_addr, MASTER_PORT=environ.get('MASTER_PORT', DEFAULT_MASTER_PORT))


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel`` for a model on the CPU: SyncBN layers (which need CUDA once a
    process group exists) become BN first, and ``device_ids`` is dropped (DDP rejects it for a CPU module)."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=revert_sync_batchnorm(module), device_ids=None, **kwargs)


def cpu_distributed_options(config: Config) -> List[str]:
    """``--cfg-options`` for a run in :func:`cpu_process_group`: the backend the log reports (gloo), and the
    model wrapped in :class:`CPUDistributedDataParallel`.

    A ``model_wrapper_cfg`` of the config keeps its other settings; without one, mmengine's default wrapper
    settings are written out (``broadcast_buffers=False``, ``find_unused_parameters`` from the config), as
    ``Runner.wrap_model`` would use them. A wrapper of another type is left alone.
    """
    options = ['env_cfg.dist_cfg.backend=gloo']
    wrapper = config.get('model_wrapper_cfg', None)
    if wrapper is not None and wrapper.get('type', 'MMDistributedDataParallel') != 'MMDistributedDataParallel':
        return options
    options.append('model_wrapper_cfg.type=CPUDistributedDataParallel')
    if wrapper is None:
        options += ['model_wrapper_cfg.broadcast_buffers=False',
                    f'model_wrapper_cfg.find_unused_parameters={bool(config.get("find_unused_parameters", False))}']
    return options


@contextlib.contextmanager
def cpu_process_group(launcher: str, config: Config) -> Iterator[None]:
    """A gloo process group for the block, started from the launcher's environment with the options of the
    config's ``env_cfg.dist_cfg`` (``timeout`` in seconds, as mmengine's ``init_dist``), destroyed after it.

    After a block that succeeded the group is taken down the clean way, on every rank: the block's garbage is
    collected first (a Runner's reference cycles keep its DDP wrapper, which holds the group and its gloo
    threads), then all ranks meet at a barrier (no rank closes connections another still uses), then it is
    destroyed. Left to interpreter shutdown, a gloo thread that needs the GIL aborts the process after a run
    that succeeded; destroyed right after a collective on torch < 2.8, the group's destructor can deadlock
    against such a thread (pytorch/pytorch#154976). After a failure it is destroyed without the barrier, which
    other ranks may never reach.
    """
    # Exported because env:// and mmengine (LOCAL_RANK for logging and the data sampler) read them there.
    os.environ.update(distributed_env(launcher, os.environ))
    options = {key: value for key, value in (config.get('env_cfg', None) or {}).get('dist_cfg', {}).items()
               if key != 'backend'}
    if isinstance(options.get('timeout', None), (int, float)):
        options['timeout'] = datetime.timedelta(seconds=options['timeout'])
    torch_dist.init_process_group(backend='gloo', init_method='env://', rank=int(os.environ['RANK']),
                                  world_size=int(os.environ['WORLD_SIZE']), **options)
    try:
        yield
    except BaseException:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        raise
    if torch_dist.is_initialized():
        gc.collect()
        torch_dist.barrier()
        torch_dist.destroy_process_group()
