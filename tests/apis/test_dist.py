"""ghm_mmdet.apis.dist: a gloo process group where mmengine would call torch.cuda.set_device, and a DDP wrapper
that takes a CPU module with SyncBN."""
import gc
import socket

import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

from ghm_mmdet.apis.dist import (
    CPUDistributedDataParallel,
    ToolError,
    cpu_distributed_options,
    cpu_process_group,
    distributed_env,
)

pytestmark = pytest.mark.compat


def no_host(node_list):
    raise AssertionError('scontrol must not be called when MASTER_ADDR is set')


def test_slurm_env_as_mmengine_derives_it():
    environ = dict(SLURM_PROCID='3', SLURM_NTASKS='8', SLURM_LOCALID='1', SLURM_NODELIST='node[07-08]')
    env = distributed_env('slurm', environ, resolve_host=lambda nodes: {'node[07-08]': 'node07'}[nodes])
    assert env == dict(RANK='3', WORLD_SIZE='8', LOCAL_RANK='1', MASTER_ADDR='node07', MASTER_PORT='29500')


def test_slurm_env_honours_master_addr_and_port():
    environ = dict(SLURM_PROCID='0', SLURM_NTASKS='2', SLURM_LOCALID='0', SLURM_NODELIST='n1',
                   MASTER_ADDR='10.1.2.3', MASTER_PORT='29611')
    env = distributed_env('slurm', environ, resolve_host=no_host)
    assert (env['MASTER_ADDR'], env['MASTER_PORT']) == ('10.1.2.3', '29611')


def test_pytorch_env_is_torchruns():
    environ = dict(RANK='1', WORLD_SIZE='2', LOCAL_RANK='1', MASTER_ADDR='127.0.0.1', MASTER_PORT='29512')
    assert distributed_env('pytorch', environ) == environ


def test_mpi_env_from_open_mpi():
    environ = dict(OMPI_COMM_WORLD_RANK='5', OMPI_COMM_WORLD_SIZE='6', OMPI_COMM_WORLD_LOCAL_RANK='1',
                   MASTER_ADDR='head')
    assert distributed_env('mpi', environ) == dict(RANK='5', WORLD_SIZE='6', LOCAL_RANK='1',
                                                   MASTER_ADDR='head', MASTER_PORT='29500')


@pytest.mark.parametrize('launcher, environ, missing', [
    ('pytorch', dict(RANK='0'), 'WORLD_SIZE, MASTER_ADDR'),
    ('slurm', dict(SLURM_PROCID='0'), 'SLURM_NTASKS, SLURM_NODELIST'),
    ('mpi', dict(OMPI_COMM_WORLD_RANK='0', OMPI_COMM_WORLD_SIZE='1', OMPI_COMM_WORLD_LOCAL_RANK='0'),
     'MASTER_ADDR'),
])
def test_missing_launcher_variables_are_named(launcher, environ, missing):
    with pytest.raises(ToolError, match=f'--launcher {launcher} needs the environment variables {missing},'):
        distributed_env(launcher, environ)


def test_cpu_options_write_mmengines_default_wrapper_as_ours():
    options = cpu_distributed_options(Config(dict(find_unused_parameters=True)))
    assert options == ['env_cfg.dist_cfg.backend=gloo', 'model_wrapper_cfg.type=CPUDistributedDataParallel',
                       'model_wrapper_cfg.broadcast_buffers=False', 'model_wrapper_cfg.find_unused_parameters=True']


def test_cpu_options_keep_a_configured_wrapper_and_leave_other_types_alone():
    configured = Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', broadcast_buffers=True)))
    assert cpu_distributed_options(configured) == ['env_cfg.dist_cfg.backend=gloo',
                                                   'model_wrapper_cfg.type=CPUDistributedDataParallel']
    other = Config(dict(model_wrapper_cfg=dict(type='MMFullyShardedDataParallel')))
    assert cpu_distributed_options(other) == ['env_cfg.dist_cfg.backend=gloo']


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def one_process_torchrun_env(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('with CUDA the Runner starts NCCL itself; this is the CPU path')
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    yield
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


class WithSyncBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.norm = torch.nn.SyncBatchNorm(4)

    def forward(self, x):
        return self.norm(self.conv(x))


def test_cpu_group_is_gloo_and_the_wrapper_takes_a_cpu_module_with_syncbn(one_process_torchrun_env):
    config = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60))))
    with cpu_process_group('pytorch', config):
        assert torch_dist.get_backend() == 'gloo'
        # What mmengine's Runner.wrap_model passes without our wrapper, and to ours.
        with pytest.raises(ValueError, match='device_ids'):
            MMDistributedDataParallel(module=torch.nn.Linear(2, 1), device_ids=[0])
        with pytest.raises(ValueError, match='SyncBatchNorm expected input tensor to be on GPU'):
            WithSyncBN()(torch.ones(2, 3, 4, 4))
        module = WithSyncBN()
        weight = module.norm.weight
        model = MODEL_WRAPPERS.build(dict(type='CPUDistributedDataParallel', broadcast_buffers=False),
                                     default_args=dict(module=module, device_ids=[0]))
        assert type(model) is CPUDistributedDataParallel
        assert type(model.module.norm) is not torch.nn.SyncBatchNorm
        assert isinstance(model.module.norm, torch.nn.modules.batchnorm._BatchNorm)
        assert model.module.norm.weight is weight  # the same parameters: checkpoints and optimizers agree
        model(torch.ones(2, 3, 4, 4)).sum().backward()
        assert model.module.conv.weight.grad is not None
    assert not torch_dist.is_initialized()


def live_ddp_wrappers() -> int:
    return sum(isinstance(obj, MMDistributedDataParallel) for obj in gc.get_objects())


@pytest.fixture
def teardown_calls(monkeypatch):
    """The barrier and destroy calls on the way out of the block, with the DDP wrappers alive at destroy."""
    calls = []
    barrier, destroy = torch_dist.barrier, torch_dist.destroy_process_group

    def spy_barrier(*args, **kwargs):
        calls.append('barrier')
        return barrier(*args, **kwargs)

    def spy_destroy(*args, **kwargs):
        calls.append(f'destroy with {live_ddp_wrappers()} DDP wrappers alive')
        return destroy(*args, **kwargs)

    monkeypatch.setattr(torch_dist, 'barrier', spy_barrier)
    monkeypatch.setattr(torch_dist, 'destroy_process_group', spy_destroy)
    return calls


def train_with_a_runner_like_cycle():
    """What a Runner leaves behind: a DDP wrapper (holding the group) in a reference cycle."""
    runner = dict(model=MMDistributedDataParallel(module=torch.nn.Linear(2, 1)))
    runner['self'] = runner
    runner['model'](torch.ones(1, 2)).sum().backward()


def test_group_outlives_nothing_that_holds_it_and_ranks_meet_before_it_goes(one_process_torchrun_env,
                                                                            teardown_calls):
    # Left alive, the wrapper keeps the group's gloo threads running into interpreter shutdown, where a
    # thread that needs the GIL aborts the process ("terminate called without an active exception").
    gc.collect()
    before = live_ddp_wrappers()
    with cpu_process_group('pytorch', Config(dict())):
        train_with_a_runner_like_cycle()
        assert live_ddp_wrappers() == before + 1  # the cycle: freed only by the collector
    assert teardown_calls == ['barrier', f'destroy with {before} DDP wrappers alive']
    assert not torch_dist.is_initialized()


def test_failed_block_destroys_the_group_without_waiting_for_the_other_ranks(one_process_torchrun_env,
                                                                           teardown_calls):
    with pytest.raises(KeyError, match='a bug in the block'):
        with cpu_process_group('pytorch', Config(dict())):
            raise KeyError('a bug in the block')
    assert teardown_calls == ['destroy with 0 DDP wrappers alive']
    assert not torch_dist.is_initialized()
