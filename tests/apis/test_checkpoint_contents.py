"""Everything mmengine and mmdet put into a training checkpoint loads through the allowlist, as a whole: every
registered parameter scheduler, the optimizer wrappers' state (AMP's loss scaler included), every EMA model of
EMAHook, the message hub and the dataset meta. Each is saved as mmengine saves a checkpoint and must read back
equal to what an unrestricted ``torch.load`` gives."""
import inspect
import math

import mmdet.engine  # noqa: F401  (registers mmdet's schedulers and EMA models)
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import PARAM_SCHEDULERS as MMDET_SCHEDULERS
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_SCHEDULERS
from mmengine.runner.checkpoint import save_checkpoint

from ghm_mmdet.apis.checkpoint import UnsafeCheckpointError, load_checkpoint_safely

pytestmark = pytest.mark.compat

STEPS = 7
#: What a scheduler's required arguments get (every other argument keeps its default).
REQUIRED_ARGUMENTS = dict(
    param_name='lr', milestones=[2, 4], step_size=2, gamma=0.5, T_max=10, eta_max=0.1, periods=[3, 5],
    total_steps=20, lr_lambda=lambda step: 0.9**step, eta_min=0.0, factor=0.5,
    start_factor=0.5, power=1.0, monitor='loss')
#: Arguments a scheduler family needs beyond those (its constructor asserts on them; mmengine 0.7's OneCycle
#: gives total_steps and eta_max defaults it cannot run with).
FAMILY_ARGUMENTS = dict(CosineRestart=dict(eta_min=0.0, restart_weights=[1.0, 0.5]), QuadraticWarmup=dict(end=5),
                        OneCycle=dict(total_steps=20, eta_max=0.1))


def all_schedulers():
    registered = {**MMENGINE_SCHEDULERS.module_dict, **MMDET_SCHEDULERS.module_dict}
    return sorted(registered.items())


def required_arguments(cls):
    """The arguments without a default of the nearest ``__init__`` that names them (``LinearLR`` passes
    ``*args, **kwargs`` on to ``LinearParamScheduler`` with ``param_name='lr'``)."""
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in parameters):
            continue
        named = [p.name for p in parameters if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
        fixed = ['param_name'] if klass is not cls else []  # set by the subclass
        return [name for name in named if name not in ('self', 'optimizer', *fixed)]


def build_scheduler(cls, optimizer):
    arguments = {name: REQUIRED_ARGUMENTS[name] for name in required_arguments(cls)}
    for family, extra in FAMILY_ARGUMENTS.items():
        if cls.__name__.startswith(family):
            arguments.update(extra)
    if 'param_name' in arguments and 'momentum' in cls.__name__.lower():
        arguments['param_name'] = 'momentum'
    return cls(optimizer, **arguments)


def step(scheduler, count):
    for index in range(count):
        scheduler.optimizer.step()  # as training does: the optimizer first
        if 'metrics' in inspect.signature(scheduler.step).parameters:
            scheduler.step(dict(loss=1.0 / (index + 1)))
        else:
            scheduler.step()


def same(loaded, reference) -> bool:
    """Equality through containers, tensors, arrays and functions (NaN equals NaN)."""
    if type(loaded) is not type(reference):
        return False
    if isinstance(reference, dict):
        return loaded.keys() == reference.keys() and all(same(loaded[k], reference[k]) for k in reference)
    if isinstance(reference, (list, tuple)):
        return len(loaded) == len(reference) and all(map(same, loaded, reference))
    if isinstance(reference, torch.Tensor):
        return loaded.dtype == reference.dtype and torch.equal(loaded, reference)
    if isinstance(reference, np.ndarray):
        return np.array_equal(loaded, reference)
    if isinstance(reference, float) and math.isnan(reference):
        return math.isnan(loaded)
    if isinstance(reference, HistoryBuffer):
        return same(reference.data, loaded.data) and loaded.max_length == reference.max_length
    return loaded == reference


def save_and_load(checkpoint, path):
    save_checkpoint(checkpoint, str(path))
    loaded = load_checkpoint_safely(str(path))
    reference = torch.load(str(path), weights_only=False) if 'weights_only' in inspect.signature(
        torch.load).parameters else torch.load(str(path))
    assert same(loaded, reference), (loaded, reference)
    return loaded


@pytest.mark.parametrize('name, cls', all_schedulers(), ids=[name for name, _ in all_schedulers()])
def test_every_registered_scheduler_state_loads(name, cls, tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = build_scheduler(cls, optimizer)
    step(scheduler, STEPS)
    checkpoint = dict(meta=dict(epoch=1, iter=STEPS), param_schedulers=[scheduler.state_dict()])
    loaded = save_and_load(checkpoint, tmp_path / 'epoch_1.pth')
    # It restores: a fresh scheduler given the state steps on as the original.
    restored = build_scheduler(cls, torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9))
    restored.load_state_dict(loaded['param_schedulers'][0])
    assert restored.last_step == scheduler.last_step


def test_the_1x_recipes_multistep_milestones_are_a_counter(tmp_path):
    # The case that refused every checkpoint of the published 1x recipe: MultiStepLR keeps a Counter.
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    scheduler = MMENGINE_SCHEDULERS.get('MultiStepLR')(optimizer, milestones=[8, 11], by_epoch=True)
    state = save_and_load(dict(param_schedulers=[scheduler.state_dict()]), tmp_path / 'e.pth')
    assert type(state['param_schedulers'][0]['milestones']).__name__ == 'Counter'


def grad_scaler_state():
    """``GradScaler.state_dict()`` after a step with an overflow: built on the CPU where torch can (>= 2.3),
    else the keys and types torch's CUDA scaler writes (AmpOptimWrapper needs CUDA)."""
    if hasattr(torch, 'amp') and hasattr(torch.amp, 'GradScaler') and torch.__version__ >= '2.3':
        scaler = torch.amp.GradScaler('cpu', init_scale=2.**16)
        parameter = torch.nn.Parameter(torch.ones(2))
        optimizer = torch.optim.SGD([parameter], lr=0.1)
        scaler.scale((parameter * float('inf')).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
        state = scaler.state_dict()
        assert state['scale'] == 2.**15  # the overflow halved it: a real state
        return state
    return dict(scale=32768.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000, _growth_tracker=0)


def test_optimizer_wrapper_state_with_amps_loss_scaler_loads(tmp_path):
    model = torch.nn.Linear(2, 1)
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3), clip_grad=dict(max_norm=35))
    wrapper.update_params(model(torch.ones(3, 2)).sum())
    state = wrapper.state_dict()
    state['loss_scaler'] = grad_scaler_state()  # what AmpOptimWrapper.state_dict() adds
    loaded = save_and_load(dict(optimizer=state), tmp_path / 'amp.pth')
    assert loaded['optimizer']['loss_scaler']['scale'] == state['loss_scaler']['scale']


def ema_types():
    names = {name for name, cls in {**MMENGINE_MODELS.module_dict, **MMDET_MODELS.module_dict}.items()
             if 'BaseAveragedModel' in [base.__name__ for base in cls.__mro__]}
    assert {'ExponentialMovingAverage', 'ExpMomentumEMA', 'MomentumAnnealingEMA',
            'StochasticWeightAverage'} <= names
    return sorted(names)


@pytest.mark.parametrize('ema_type', ema_types())
def test_ema_hook_state_of_every_ema_type_loads(ema_type, tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    registry = MMDET_MODELS if ema_type in MMDET_MODELS.module_dict else MMENGINE_MODELS
    ema = registry.build(dict(type=ema_type, model=model))
    for _ in range(3):
        model(torch.rand(2, 3, 4, 4)).sum().backward()
        ema.update_parameters(model)
    # EMAHook.before_save_checkpoint: the EMA weights as ema_state_dict, the model's in state_dict.
    checkpoint = dict(state_dict=model.state_dict(), ema_state_dict=ema.state_dict())
    loaded = save_and_load(checkpoint, tmp_path / 'ema.pth')
    assert int(loaded['ema_state_dict']['steps']) == int(ema.steps)


def test_message_hub_and_dataset_meta_load(tmp_path):
    hub = MessageHub('checkpoint-contents')
    for index in range(5):
        hub.update_scalar('train/loss', 1.0 / (index + 1))
        hub.update_scalar('train/lr', np.float64(0.01))
    hub.update_info('iter', 5)
    hub.update_info('dataset_meta', dict(classes=('a', 'b'), palette=[(220, 20, 60), (0, 0, 142)]))
    meta = dict(epoch=1, iter=5, seed=np.int64(0), mmengine_version='x', time='20261206',
                dataset_meta=dict(classes=('a', 'b'), palette=[(220, 20, 60), (0, 0, 142)]))
    loaded = save_and_load(dict(meta=meta, message_hub=hub.state_dict()), tmp_path / 'hub.pth')
    assert loaded['meta']['dataset_meta']['classes'] == ('a', 'b')


def test_a_type_outside_the_allowlist_is_still_refused_by_name(tmp_path):
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    path = tmp_path / 'odd.pth'
    save_checkpoint(dict(param_schedulers=[dict(milestones=torch.optim.SGD)], optimizer=optimizer.state_dict()),
                    str(path))
    with pytest.raises(UnsafeCheckpointError, match="it holds the pickled global 'torch.optim.sgd.SGD', which is "
                       'not among the types mmengine/mmdet checkpoints contain'):
        load_checkpoint_safely(str(path))
