"""ghm_mmdet.apis.checkpoint: allowlisted loading of mmengine checkpoints, changing nothing but the result,
scoped to mmengine's checkpoint loaders. Every test here runs at both tested corners (torch 2.1 and 2.13)."""
import _compat_pickle
import copyreg
import os
import pickle
import pickletools
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model.weight_init import PretrainedInit
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint, load_checkpoint
from packaging.version import Version

from ghm_mmdet.apis import checkpoint as safe
from ghm_mmdet.apis.checkpoint import (
    ONE_CYCLE,
    HistoryBufferStandIn,
    RefusedContent,
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    allowed_globals,
    load_checkpoint_safely,
    numpy_dtype,
    pickled_attribute,
    use_weights_only_loaders,
)

pytestmark = pytest.mark.compat

HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'



def mmengine_like_checkpoint(path):
    """What Runner.save_checkpoint writes, in small: a message hub with HistoryBuffers and numpy scalars."""
    hub = MessageHub(f'hub-{path.name}')
    for value in (3.0, 1.0, 2.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(12.5))
    checkpoint = dict(
        meta=dict(epoch=0, iter=3, seed=0, best_score=np.float64(0.25),
                  dataset_meta=dict(classes=('a', 'b'))),
        state_dict={'weight': torch.arange(2.).reshape(1, 2), 'bias': torch.tensor([0.5])},
        message_hub=hub.state_dict(),
        optimizer=dict(state={0: dict(momentum_buffer=torch.ones(2))}, param_groups=[dict(lr=0.01)]))
    torch.save(checkpoint, path)
    return path


class Payload:
    def __init__(self, func, *args):
        self.call = (func, args)

    def __reduce__(self):
        return self.call


def poisoned(path, payload):
    torch.save(dict(state_dict={'w': torch.zeros(1)}, meta=dict(note=payload)), path)
    return path


PAYLOADS = [
    (lambda marker: Payload(os.system, f'touch {marker}'), 'posix.system'),
    (lambda marker: Payload(subprocess.call, ['touch', str(marker)]), 'subprocess.call'),
    (lambda marker: Payload(eval, f'open({str(marker)!r}, "w")'), 'builtins.eval'),
    (lambda marker: Payload(exec, f'open({str(marker)!r}, "w")'), 'builtins.exec'),
]
PAYLOAD_IDS = [refused for _, refused in PAYLOADS]


def refusal(path, refused):
    return (f"refusing to load checkpoint {path}: it holds the pickled global '{refused}', which is not among "
            'the types mmengine/mmdet checkpoints contain (loaded with an allowlist)')


class CraftedHistoryBuffer:
    """Pickles exactly as a ``HistoryBuffer`` whose ``__getstate__`` returned ``state``."""
    __class__ = HistoryBuffer  # pickle requires the __newobj__ class to be the object's own

    def __init__(self, state):
        self.state = state

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (HistoryBuffer,), self.state


def history_state(**changes):
    """The state ``HistoryBuffer.__getstate__`` writes for a buffer holding 1.0 and 3.0, with changes."""
    state = dict(max_length=1000000, _log_history=np.array([1.0, 3.0]), _count_history=np.array([1, 1]),
                 statistics_methods={name: getattr(HistoryBuffer, name) for name in
                                     ('min', 'max', 'current', 'mean')})
    state.update(changes)
    return state


def crafted(path, state):
    torch.save(dict(message_hub=dict(log_scalars={'train/loss': CraftedHistoryBuffer(state)})), path)
    return path


@pytest.fixture
def statistics_methods():
    """``HistoryBuffer._statistics_methods`` as it was (mmengine's four defaults), restored afterwards."""
    HistoryBuffer()  # registers the defaults, as any buffer does
    before = dict(HistoryBuffer._statistics_methods)
    yield before
    HistoryBuffer._statistics_methods.clear()
    HistoryBuffer._statistics_methods.update(before)


def pickled_globals(path):
    """The globals a ``torch.save`` file's pickle names (protocol 2: GLOBAL opcodes), in Python 3 spelling."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(name for name in archive.namelist() if name.endswith('/data.pkl')))
    names = set()
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == 'GLOBAL':
            module, name = argument.split(' ')
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            names.add(f'{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}')
    return names


@pytest.mark.skipif(Version(torch.__version__.split('+')[0]) < Version('2.6'),
                    reason='torch < 2.6 loads with weights_only=False by default')
def test_torch_default_load_refuses_mmengine_checkpoint(tmp_path):
    # Why this module exists on torch >= 2.6: weights-only by default, without mmengine's types.
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global: GLOBAL numpy'):
        torch.load(path)


def test_safe_load_restores_history_buffers_and_numpy_values(tmp_path, statistics_methods):
    checkpoint = load_checkpoint_safely(mmengine_like_checkpoint(tmp_path / 'ckpt.pth'))
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert type(loss) is HistoryBuffer
    assert sorted(vars(loss)) == ['_count_history', '_log_history', 'max_length']
    assert loss.mean() == pytest.approx(2.0)
    assert loss.statistics('max') == 3.0
    assert loss.max_length == 1000000
    assert checkpoint['message_hub']['runtime_info']['eta'] == np.float64(12.5)
    assert checkpoint['meta']['best_score'].dtype == np.float64
    assert torch.equal(checkpoint['state_dict']['weight'], torch.arange(2.).reshape(1, 2))
    assert HistoryBuffer._statistics_methods == statistics_methods


def test_loaded_checkpoint_equals_what_torch_unpickles_without_an_allowlist(tmp_path):
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    ours, theirs = load_checkpoint_safely(path), torch.load(path, weights_only=False)
    for name in ('_log_history', '_count_history'):
        mine, reference = (getattr(c['message_hub']['log_scalars']['train/loss'], name) for c in (ours, theirs))
        assert mine.dtype == reference.dtype
        np.testing.assert_array_equal(mine, reference)
    assert ours['meta'] == theirs['meta']
    assert ours['optimizer']['param_groups'] == theirs['optimizer']['param_groups']
    assert torch.equal(ours['optimizer']['state'][0]['momentum_buffer'], torch.ones(2))


def test_model_state_dict_with_its_metadata_and_every_dtype_loads(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    tensors = {str(dtype): torch.zeros(2, dtype=dtype) for dtype in
               (torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8, torch.int64, torch.bool)}
    torch.save(dict(state_dict=model.state_dict(), tensors=tensors, size=torch.Size([2, 3]),
                    device=torch.device('cpu'), parameter=torch.nn.Parameter(torch.ones(2))), tmp_path / 'm.pth')
    loaded = load_checkpoint_safely(tmp_path / 'm.pth')
    assert loaded['state_dict']._metadata == model.state_dict()._metadata  # OrderedDict state: BUILD
    assert all(torch.equal(loaded['state_dict'][k], v) for k, v in model.state_dict().items())
    assert {k: v.dtype for k, v in loaded['tensors'].items()} == {k: v.dtype for k, v in tensors.items()}
    assert loaded['size'] == torch.Size([2, 3]) and loaded['device'] == torch.device('cpu')
    assert isinstance(loaded['parameter'], torch.nn.Parameter)


def test_allowlist_covers_what_the_checkpoint_needs_and_nothing_general(tmp_path):
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    assert pickled_globals(path) <= set(allowed_globals())
    outside_torch = {name for name in allowed_globals() if not name.startswith('torch.')}
    assert outside_torch == {
        HISTORY_BUFFER, 'numpy.ndarray', 'numpy.dtype', 'numpy._core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar', 'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',
        'builtins.getattr', 'collections.OrderedDict', 'builtins.set', 'builtins.frozenset', 'builtins.complex',
        'builtins.bytearray', 'builtins.slice', '_codecs.encode', 'collections.Counter',
        'mmengine.optim.scheduler.param_scheduler.OneCycleParamScheduler'}
    assert allowed_globals()['mmengine.optim.scheduler.param_scheduler.OneCycleParamScheduler'] is ONE_CYCLE
    functions = {name for name, value in allowed_globals().items() if callable(value) and name.startswith('torch.')
                 and not isinstance(value, type)}
    assert all(name.startswith(('torch._utils._rebuild_', 'torch.serialization._get_layout')) for name in functions)


def test_history_buffer_getattr_and_dtype_are_bound_to_the_stand_ins():
    assert allowed_globals()[HISTORY_BUFFER] is HistoryBufferStandIn
    assert allowed_globals()['builtins.getattr'] is pickled_attribute
    assert allowed_globals()['numpy.dtype'] is numpy_dtype
    assert HistoryBuffer not in allowed_globals().values()  # its __setstate__ writes to the class
    assert getattr not in allowed_globals().values()


@pytest.mark.parametrize('owner, name', [(HistoryBuffer, '__init__'), (HistoryBufferStandIn, 'update'),
                                         (HistoryBuffer, '_statistics_methods'), (np.ndarray, 'tofile'),
                                         (os, 'system'), (ONE_CYCLE, 'step'), (ONE_CYCLE, '__init__'),
                                         (ONE_CYCLE, 'cls')])
def test_pickled_attribute_refuses_anything_else(owner, name):
    with pytest.raises(RefusedContent, match="'builtins.getattr' fetching"):
        pickled_attribute(owner, name)


def test_pickled_attribute_resolves_the_four_statistics_and_one_cycles_annealing():
    for name in ('min', 'max', 'current', 'mean'):
        assert pickled_attribute(HistoryBufferStandIn, name) is getattr(HistoryBuffer, name)
    from mmengine.optim.scheduler.param_scheduler import OneCycleParamScheduler
    for name in ('_annealing_cos', '_annealing_linear'):
        assert pickled_attribute(ONE_CYCLE, name) is getattr(OneCycleParamScheduler, name)


def test_the_one_cycle_class_a_checkpoint_names_cannot_be_called():
    with pytest.raises(RefusedContent, match="it calls the pickled global 'mmengine.optim.scheduler"):
        ONE_CYCLE(None, 'lr', eta_max=0.1)


@pytest.mark.skipif(not hasattr(HistoryBuffer, '__setstate__'),
                    reason='this mmengine has no HistoryBuffer.__setstate__ (added in 0.8): nothing to attack')
def test_the_attack_is_real_with_history_buffer_itself_allowlisted(tmp_path, statistics_methods, monkeypatch):
    # What allowlisting mmengine's HistoryBuffer itself would let a checkpoint do: its __setstate__ rewrites
    # the statistics of every HistoryBuffer in the process.
    path = crafted(tmp_path / 'evil.pth', history_state(statistics_methods={'mean': HistoryBuffer.max}))
    naive = dict(allowed_globals(), **{HISTORY_BUFFER: HistoryBuffer})
    monkeypatch.setattr(safe, 'allowed_globals', lambda: naive)
    monkeypatch.setattr(safe, '_BUILDABLE', safe._BUILDABLE + (HistoryBuffer,))
    load_checkpoint_safely(path)
    assert HistoryBuffer._statistics_methods['mean'] is HistoryBuffer.max
    assert HistoryBuffer([1.0, 3.0], [1, 1]).statistics('mean') == 3.0


class StatefulReduce:
    """Pickles as ``func(*args)`` followed by ``BUILD`` with ``state``."""

    def __init__(self, func, args, state):
        self.reduced = (func, args, state)

    def __reduce__(self):
        return self.reduced


def test_build_on_a_shared_function_is_refused(tmp_path, statistics_methods):
    # getattr(HistoryBuffer, 'min') is allowed; setting state on that function would change it for everyone.
    path = poisoned(tmp_path / 'evil.pth', StatefulReduce(getattr, (HistoryBuffer, 'min'), {'evil': 1}))
    with pytest.raises(UnsafeCheckpointError, match='it sets the state of HistoryBuffer.min'):
        load_checkpoint_safely(path)
    assert not hasattr(HistoryBuffer.min, 'evil')


def test_a_numpy_dtype_is_always_a_copy_so_the_shared_one_keeps_its_state(tmp_path):
    # numpy.dtype('f8', False, False) returns numpy's cached float64; BUILD would make it big-endian.
    state = np.dtype('>f8').__reduce__()[2]
    path = poisoned(tmp_path / 'evil.pth', StatefulReduce(np.dtype, ('f8', False, False), state))
    loaded = load_checkpoint_safely(path)['meta']['note']
    assert loaded.byteorder == '>'
    assert np.dtype('f8').byteorder == '=' and np.zeros(1).dtype.byteorder == '='


@pytest.mark.parametrize('changes, problem', [
    (dict(statistics_methods={'mean': HistoryBuffer.max}), "maps the statistic 'mean' to HistoryBuffer.max"),
    (dict(statistics_methods={'median': HistoryBuffer.max}), "maps the statistic 'median' to HistoryBuffer.max"),
    (dict(_statistics_methods={'mean': HistoryBuffer.max}), "sets the attribute(s) '_statistics_methods'"),
    (dict(statistics_methods=[('mean', HistoryBuffer.max)]), 'has statistics_methods of type list'),
    (dict(max_length='1000000'), "has max_length '1000000', not an int >= 1"),
    (dict(_count_history=np.array([1])), 'has a _log_history and a _count_history of different lengths'),
    (dict(_log_history=[1.0, 3.0]), 'has a _log_history that is not a 1-d numeric numpy array'),
])
def test_crafted_history_buffer_state_is_refused_and_class_state_unchanged(tmp_path, statistics_methods,
                                                                           changes, problem):
    path = crafted(tmp_path / 'evil.pth', history_state(**changes))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(path)
    assert str(info.value).startswith(f'refusing to load checkpoint {path}: its HistoryBuffer state {problem}')
    assert info.value.refused_global == HISTORY_BUFFER
    assert HistoryBuffer._statistics_methods == statistics_methods
    assert all(HistoryBuffer._statistics_methods[name] is getattr(HistoryBuffer, name)
               for name in ('min', 'max', 'current', 'mean'))


def test_honest_history_buffer_state_without_statistics_loads(tmp_path, statistics_methods):
    # mmengine before __getstate__ existed pickled no statistics_methods at all.
    state = history_state()
    del state['statistics_methods']
    loaded = load_checkpoint_safely(crafted(tmp_path / 'old.pth', state))['message_hub']['log_scalars']
    assert type(loaded['train/loss']) is HistoryBuffer
    assert loaded['train/loss'].mean() == 2.0
    assert HistoryBuffer._statistics_methods == statistics_methods


@pytest.mark.parametrize('make_payload, refused', PAYLOADS, ids=PAYLOAD_IDS)
def test_payload_is_refused_and_never_runs(tmp_path, make_payload, refused):
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', make_payload(marker))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(str(path))
    assert not marker.exists()
    assert info.value.refused_global == refused
    assert info.value.checkpoint == str(path)
    assert str(info.value) == refusal(path, refused)


def test_getattr_gadget_through_allowlisted_class_is_refused(tmp_path):
    # getattr is allowlisted under its name; fetching anything but a HistoryBuffer statistic must fail.
    path = poisoned(tmp_path / 'evil.pth', Payload(getattr, HistoryBuffer, 'update'))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(str(path))
    assert "it holds the pickled global 'builtins.getattr' fetching HistoryBuffer.update," in str(info.value)
    assert info.value.refused_global == 'builtins.getattr'


def test_env_var_forcing_unsafe_loads_does_not_weaken_it(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_safely(str(path))
    assert not marker.exists()


def test_truncated_checkpoint_is_named_as_unreadable(tmp_path):
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    truncated = tmp_path / 'iter_8.pth'
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(UnreadableCheckpointError, match=f'^checkpoint file {truncated} is not a readable '
                                                       'torch checkpoint'):
        load_checkpoint_safely(str(truncated))


def test_text_file_is_named_as_unreadable(tmp_path):
    path = tmp_path / 'notes.pth'
    path.write_text('hello\n')
    with pytest.raises(UnreadableCheckpointError, match=f'^checkpoint file {path} is not a readable'):
        load_checkpoint_safely(str(path))


# ----- the scope: mmengine's CheckpointLoader, not torch.load -----

def test_every_scheme_is_wrapped_once_and_mmengine_keeps_choosing_by_prefix(schemes):
    assert {'', 'http://', 'https://', 'torchvision://', 'open-mmlab://', 'mmcls://', 'pavi://'} <= set(schemes)
    use_weights_only_loaders()
    wrapped = dict(CheckpointLoader._schemes)
    assert list(wrapped) == list(schemes)
    for prefix, loader in wrapped.items():
        assert loader.through_allowlist and loader.__wrapped__ is schemes[prefix], prefix
    use_weights_only_loaders()  # again: nothing is wrapped twice
    assert dict(CheckpointLoader._schemes) == wrapped
    assert CheckpointLoader._get_checkpoint_loader('open-mmlab:s3://b/y.pth').__wrapped__ is \
        schemes[r'(\S+\:)?s3://']


class Note:
    """An arbitrary class of user code: loadable only with ``weights_only=False``."""

    def __init__(self, text):
        self.text = text


@pytest.mark.parametrize('make_payload, refused', PAYLOADS, ids=PAYLOAD_IDS)
def test_checkpoint_loader_refuses_while_user_torch_load_keeps_its_semantics(tmp_path, make_payload, refused,
                                                                             schemes):
    marker = tmp_path / 'payload_ran'
    evil = poisoned(tmp_path / 'evil.pth', make_payload(marker))
    trusted = tmp_path / 'trusted.pth'
    torch.save({'note': Note('mine')}, trusted)
    torch_load = torch.load
    use_weights_only_loaders()
    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(evil))
    assert str(info.value) == refusal(evil, refused)
    assert not marker.exists()
    assert torch.load is torch_load  # replaced only during a loader's call
    assert torch.load(trusted, weights_only=False)['note'].text == 'mine'
    with pytest.raises(pickle.UnpicklingError, match='Note'):
        torch.load(trusted, weights_only=True)  # nor is an explicit weights_only=True widened


def test_runner_paths_load_real_checkpoints_and_refuse_poisoned_ones(tmp_path, statistics_methods, schemes):
    # Runner.load_checkpoint/resume call _load_checkpoint; init_cfg=dict(type='Pretrained') and load_from
    # go through load_checkpoint: all of them end in CheckpointLoader.
    good = mmengine_like_checkpoint(tmp_path / 'good.pth')
    marker = tmp_path / 'payload_ran'
    evil = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    use_weights_only_loaders()
    assert type(_load_checkpoint(str(good))['message_hub']['log_scalars']['train/loss']) is HistoryBuffer
    model = torch.nn.Linear(2, 1)
    load_checkpoint(model, str(good))
    assert torch.equal(model.weight.detach(), torch.arange(2.).reshape(1, 2))
    PretrainedInit(checkpoint=str(good))(torch.nn.Linear(2, 1))
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        _load_checkpoint(str(evil))
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        PretrainedInit(checkpoint=str(evil))(torch.nn.Linear(2, 1))
    with pytest.raises(FileNotFoundError, match='nowhere.pth can not be found'):
        _load_checkpoint(str(tmp_path / 'nowhere.pth'))
    assert not marker.exists()
    assert HistoryBuffer._statistics_methods == statistics_methods


REMOTE = 'https://download.openmmlab.test/checkpoints/evil.pth'


@pytest.fixture
def remote_evil(tmp_path, monkeypatch, schemes):
    """A poisoned checkpoint reachable through every remote scheme of mmengine; no network is used."""
    import mmengine.runner.checkpoint as mmengine_checkpoint
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    real_urlopen = torch.hub.urlopen

    def urlopen(request, *args, **kwargs):  # torch.hub's download: REMOTE is served from the local file
        assert request.full_url == REMOTE, request.full_url
        return real_urlopen(f'file://{path}')
    monkeypatch.setattr(torch.hub, 'urlopen', urlopen)
    for name, models in (('get_torchvision_models', {'resnet_evil': REMOTE}),
                         ('get_external_models', {'evil': REMOTE, 'evil_local': 'evil.pth'}),
                         ('get_mmcls_models', {'evil': REMOTE}), ('_get_mmengine_home', str(tmp_path))):
        monkeypatch.setattr(mmengine_checkpoint, name, lambda models=models: models)
    monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend', lambda filename, backend_args: (
        types.SimpleNamespace(get=lambda _: path.read_bytes())), raising=False)

    def download(destination):
        with open(destination, 'wb') as f:
            f.write(path.read_bytes())
    modelcloud = types.SimpleNamespace(get=lambda name: types.SimpleNamespace(name='evil.pth', download=download))
    monkeypatch.setitem(sys.modules, 'pavi', types.SimpleNamespace(modelcloud=modelcloud))
    use_weights_only_loaders()
    return marker


@pytest.mark.parametrize('filename', [REMOTE, 'torchvision://resnet_evil', 'modelzoo://resnet_evil',
                                      'open-mmlab://evil', 'openmmlab://evil_local', 'mmcls://evil',
                                      'pavi://models/evil', 's3://bucket/evil.pth',
                                      'open-mmlab:s3://bucket/evil.pth'])
def test_remote_schemes_refuse_poisoned_checkpoints(remote_evil, filename):
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        CheckpointLoader.load_checkpoint(filename)
    assert not remote_evil.exists()


def test_http_loader_loads_through_torch_hub_cache_weights_only(tmp_path, statistics_methods, schemes):
    # mmengine's load_from_http downloads into torch.hub's cache, then unpickles: the allowlist's part.
    good = mmengine_like_checkpoint(tmp_path / 'good.pth')
    marker = tmp_path / 'payload_ran'
    evil = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    use_weights_only_loaders()
    load_from_http = CheckpointLoader._schemes['https://']
    checkpoint = load_from_http(f'file://{good}', None)
    assert type(checkpoint['message_hub']['log_scalars']['train/loss']) is HistoryBuffer
    with pytest.raises(UnsafeCheckpointError) as info:
        load_from_http(f'file://{evil}', None)
    assert info.value.checkpoint.endswith('evil.pth')
    assert not marker.exists()
    assert HistoryBuffer._statistics_methods == statistics_methods
