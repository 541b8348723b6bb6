"""Multi-process runs on machines without CUDA: the gloo process group mmengine 0.10.7 cannot start itself.

mmengine's ``init_dist`` calls ``torch.cuda.set_device`` for every launcher, and its ``Runner`` wraps the
model in DDP with ``device_ids=[LOCAL_RANK]``, which DDP rejects for a CPU module. With CUDA, nothing here
changes anything: the Runner starts the process group from ``env_cfg.dist_cfg`` (NCCL) as usual. Without
CUDA, :func:`init_cpu_distributed` starts a gloo group before the Runner is built (the Runner then sees
``is_distributed()`` and does not start another) and sets ``device_ids=None`` for DDP.
"""
import contextlib
import datetime
import gc
import os
import subprocess
from typing import Callable, Dict, Iterator, Mapping, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from .errors import ToolError

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
DEFAULT_MASTER_PORT = '29500'  # torch.distributed's default, as mmengine uses


def first_slurm_host(node_list: str) -> str:
    """The first host of a Slurm node list such as ``'node[01-04]'``, via ``scontrol show hostnames``."""
    result = subprocess.run(['scontrol', 'show', 'hostnames', node_list], capture_output=True, text=True)
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise ToolError(f'scontrol show hostnames {node_list} failed: {result.stderr.strip() or "no hosts"}')
    return hosts[0]


def _require(environ: Mapping[str, str], names, launcher: str, set_by: str) -> None:
    missing = [name for name in names if name not in environ]
    if missing:
        raise ToolError(f'--launcher {launcher} needs the environment variables {", ".join(missing)}, '
                        f'which {set_by} sets')


def distributed_env(launcher: str, environ: Mapping[str, str],
                    resolve_host: Callable[[str], str] = first_slurm_host) -> Dict[str, str]:
    """The ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` for ``env://``.

    Derived as mmengine's ``_init_dist_pytorch``/``_init_dist_slurm``/``_init_dist_mpi`` derive them:

    * ``pytorch``: as torchrun sets them;
    * ``slurm``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, and the first host of
      ``SLURM_NODELIST`` as ``MASTER_ADDR`` unless ``MASTER_ADDR`` is set; ``MASTER_PORT`` defaults to 29500;
    * ``mpi``: ``OMPI_COMM_WORLD_RANK``/``_SIZE``/``_LOCAL_RANK``; ``MASTER_ADDR`` must be set.

    Args:
        launcher (str): one of ``'pytorch'``, ``'slurm'``, ``'mpi'``.
        environ: the process environment (``os.environ``).
        resolve_host: maps a Slurm node list to its first host name.

    Returns:
        dict: the five variables, as strings.

    Raises:
        ToolError: a variable the launcher should have set is missing.
    """
    port = environ.get('MASTER_PORT', DEFAULT_MASTER_PORT)
    if launcher == 'pytorch':
        _require(environ, ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'), launcher,
                 'torchrun (tools/dist_train.sh, tools/dist_test.sh)')
        return dict(RANK=environ['RANK'], WORLD_SIZE=environ['WORLD_SIZE'],
                    LOCAL_RANK=environ.get('LOCAL_RANK', '0'), MASTER_ADDR=environ['MASTER_ADDR'],
                    MASTER_PORT=port)
    if launcher == 'slurm':
        _require(environ, ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'), launcher,
                 'srun (tools/slurm_train.sh, tools/slurm_test.sh)')
        master_addr = environ.get('MASTER_ADDR') or resolve_host(environ['SLURM_NODELIST'])
        return dict(RANK=environ['SLURM_PROCID'], WORLD_SIZE=environ['SLURM_NTASKS'],
                    LOCAL_RANK=environ.get('SLURM_LOCALID', '0'), MASTER_ADDR=master_addr,
                    MASTER_PORT=port)
    if launcher == 'mpi':
        _require(environ, ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK',
                           'MASTER_ADDR'), launcher, 'mpirun (with MASTER_ADDR exported)')
        return dict(RANK=environ['OMPI_COMM_WORLD_RANK'], WORLD_SIZE=environ['OMPI_COMM_WORLD_SIZE'],
                    LOCAL_RANK=environ['OMPI_COMM_WORLD_LOCAL_RANK'], MASTER_ADDR=environ['MASTER_ADDR'],
                    MASTER_PORT=port)
    raise ToolError(f'--launcher must be one of {", ".join(LAUNCHERS[1:])} for a distributed run, '
                    f'got {launcher!r}')


def use_cpu_ddp(cfg: Config) -> None:
    """Make the Runner's DDP wrapper take CPU modules: ``device_ids=None`` (mmengine passes ``[LOCAL_RANK]``).

    A ``model_wrapper_cfg`` in the config keeps its other settings; without one, mmengine's default wrapper
    (``MMDistributedDataParallel``, ``broadcast_buffers=False``) is written out with ``device_ids=None``.
    """
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    else:
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper.device_ids = None


def _timeout(dist_cfg: dict) -> Optional[datetime.timedelta]:
    seconds = dist_cfg.get('timeout', None)
    if seconds is None or isinstance(seconds, datetime.timedelta):
        return seconds
    return datetime.timedelta(seconds=seconds)


def init_cpu_distributed(launcher: str, cfg: Config) -> bool:
    """Start a gloo process group for ``launcher`` when this machine has no CUDA device.

    Args:
        launcher (str): ``--launcher``: ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        cfg (Config): the run's config; on CPU its ``env_cfg.dist_cfg.backend`` becomes ``'gloo'`` and its
            DDP wrapper gets ``device_ids=None``.

    Returns:
        bool: whether this call started the process group (the caller then destroys it at the end).
        ``False`` for ``launcher='none'``, with CUDA (the Runner starts NCCL itself), or when a group
        already exists.
    """
    if launcher == 'none' or torch.cuda.is_available() or torch_dist.is_initialized():
        return False
    # Exported because env:// and mmengine (LOCAL_RANK for the DDP wrapper and logging) read them there.
    os.environ.update(distributed_env(launcher, os.environ))
    if cfg.get('env_cfg', None) is None:
        cfg.env_cfg = dict()
    if cfg.env_cfg.get('dist_cfg', None) is None:
        cfg.env_cfg.dist_cfg = dict()
    dist_cfg = cfg.env_cfg.dist_cfg
    dist_cfg.backend = 'gloo'
    options = {key: value for key, value in dist_cfg.items() if key not in ('backend', 'timeout')}
    timeout = _timeout(dist_cfg)
    if timeout is not None:
        options['timeout'] = timeout
    torch_dist.init_process_group(backend='gloo', init_method='env://', rank=int(os.environ['RANK']),
                                  world_size=int(os.environ['WORLD_SIZE']), **options)
    use_cpu_ddp(cfg)
    return True


@contextlib.contextmanager
def cpu_process_group(launcher: str, cfg: Config) -> Iterator[None]:
    """:func:`init_cpu_distributed` for the block; the group it started is destroyed on the way out.

    After a block that succeeded, the group is taken down the clean way, on every rank: first the garbage
    from the block is collected (a Runner's reference cycles keep its DDP wrapper, which holds the group, and
    the group's gloo threads, alive), then all ranks meet at a barrier (no rank closes its connections while
    another still sends through them), then the group is destroyed. Left to interpreter shutdown, a gloo
    thread that touches a tensor needs the GIL and aborts the process ("terminate called without an active
    exception") after a run that had succeeded; destroyed right after a collective, on torch < 2.8, the group's
    destructor can deadlock against such a thread (pytorch/pytorch#154976; the barrier gives the thread the
    GIL first, see tests/gloo_ranks.py). After a failure the group is destroyed without the barrier,
    which the other ranks may never reach.

    Write the block so that the Runner is gone when it ends: build and run it in a function called there.
    """
    if not init_cpu_distributed(launcher, cfg):
        yield
        return
    try:
        yield
    except BaseException:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
        raise
    if not torch_dist.is_initialized():  # the block destroyed it itself
        return
    gc.collect()
    torch_dist.barrier()
    torch_dist.destroy_process_group()
