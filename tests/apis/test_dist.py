"""ghm_mmdet.apis.dist: a gloo process group where mmengine 0.10.7 would call torch.cuda.set_device."""
import gc
import socket

import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel

from ghm_mmdet.apis.dist import (cpu_process_group, distributed_env, init_cpu_distributed,
                                 use_cpu_ddp)
from ghm_mmdet.apis.errors import ToolError


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
    ('pytorch', dict(RANK='0'), 'WORLD_SIZE, MASTER_ADDR, MASTER_PORT'),
    ('slurm', dict(SLURM_PROCID='0'), 'SLURM_NTASKS, SLURM_NODELIST'),
    ('mpi', dict(OMPI_COMM_WORLD_RANK='0', OMPI_COMM_WORLD_SIZE='1', OMPI_COMM_WORLD_LOCAL_RANK='0'),
     'MASTER_ADDR'),
])
def test_missing_launcher_variables_are_named(launcher, environ, missing):
    with pytest.raises(ToolError, match=f'--launcher {launcher} needs the environment variables {missing},'):
        distributed_env(launcher, environ)


def test_use_cpu_ddp_writes_mmengines_default_wrapper_with_no_device_ids():
    cfg = Config(dict(find_unused_parameters=True))
    use_cpu_ddp(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', device_ids=None,
                                         broadcast_buffers=False, find_unused_parameters=True)


def test_use_cpu_ddp_keeps_a_configured_wrapper():
    cfg = Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel', broadcast_buffers=True)))
    use_cpu_ddp(cfg)
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel', broadcast_buffers=True,
                                         device_ids=None)


def test_no_launcher_starts_nothing():
    cfg = Config(dict())
    assert init_cpu_distributed('none', cfg) is False
    assert not torch_dist.is_initialized()
    assert 'model_wrapper_cfg' not in cfg


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


# torch 2.13 deprecates the broadcast_buffers=False that mmengine passes; not ours to change here.
@pytest.mark.filterwarnings('ignore:`broadcast_buffers` is deprecated:FutureWarning')
def test_cpu_group_is_gloo_and_ddp_takes_cpu_module(one_process_torchrun_env):
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=60))))
    assert init_cpu_distributed('pytorch', cfg) is True
    assert torch_dist.get_backend() == 'gloo'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert init_cpu_distributed('pytorch', cfg) is False  # already started: the Runner must not re-init

    # What mmengine's Runner would pass without use_cpu_ddp, and what it passes with it.
    with pytest.raises(ValueError, match='device_ids'):
        MMDistributedDataParallel(module=torch.nn.Linear(2, 1), device_ids=[0])
    wrapper = dict(cfg.model_wrapper_cfg)
    wrapper.pop('type')
    model = MMDistributedDataParallel(module=torch.nn.Linear(2, 1), **wrapper)
    loss = model(torch.ones(3, 2)).sum()
    loss.backward()
    assert model.module.weight.grad is not None


def test_cpu_process_group_is_gone_after_the_block(one_process_torchrun_env):
    cfg = Config(dict())
    with cpu_process_group('pytorch', cfg):
        assert torch_dist.is_initialized()
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


@pytest.mark.filterwarnings('ignore:`broadcast_buffers` is deprecated:FutureWarning')
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
