"""ghm_mmdet.apis.checkpoint: weights-only loading of mmengine checkpoints with an explicit allowlist."""
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import _load_checkpoint

from ghm_mmdet.apis.checkpoint import (UnreadableCheckpointError, UnsafeCheckpointError,
                                       checkpoint_safe_globals, history_buffer_statistic,
                                       load_checkpoint_safely, weights_only_checkpoints)


def mmengine_like_checkpoint(path):
    """What Runner.save_checkpoint writes, in small: a message hub with HistoryBuffers and numpy scalars."""
    hub = MessageHub(f'hub-{path.name}')
    for value in (3.0, 1.0, 2.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(12.5))
    checkpoint = dict(
        meta=dict(epoch=0, iter=3, seed=0, best_score=np.float64(0.25),
                  dataset_meta=dict(classes=('a', 'b'))),
        state_dict={'bbox_head.loss_cls.acc_sum': torch.arange(30.)},
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


def allowlisted_names():
    names = set()
    for entry in checkpoint_safe_globals():
        names.add(entry[1] if isinstance(entry, tuple) else f'{entry.__module__}.{entry.__qualname__}')
    return names


def test_torch_default_load_refuses_mmengine_checkpoint(tmp_path):
    # Why this module exists: torch >= 2.6 loads weights-only by default, without mmengine's types.
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    with pytest.raises(pickle.UnpicklingError, match='Unsupported global: GLOBAL numpy'):
        torch.load(path)


def test_safe_load_restores_history_buffers_and_numpy_values(tmp_path):
    checkpoint = load_checkpoint_safely(mmengine_like_checkpoint(tmp_path / 'ckpt.pth'))
    loss = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert loss.mean() == pytest.approx(2.0)
    assert loss.statistics('max') == 3.0  # statistics resolved through history_buffer_statistic
    assert checkpoint['message_hub']['runtime_info']['eta'] == np.float64(12.5)
    assert checkpoint['meta']['best_score'].dtype == np.float64
    assert torch.equal(checkpoint['state_dict']['bbox_head.loss_cls.acc_sum'], torch.arange(30.))


def test_allowlist_covers_exactly_what_the_checkpoint_needs(tmp_path):
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    assert needed <= allowlisted_names()
    non_dtype = {name for name in allowlisted_names() if not name.startswith('numpy.dtypes.')}
    assert non_dtype == {
        'mmengine.logging.history_buffer.HistoryBuffer', 'numpy.ndarray', 'numpy.dtype',
        'numpy._core.multiarray._reconstruct', 'numpy._core.multiarray.scalar',
        'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar', 'builtins.getattr'}


def test_getattr_in_allowlist_is_the_restricted_one():
    entries = dict((name, func) for func, name in
                   (e for e in checkpoint_safe_globals() if isinstance(e, tuple)))
    assert entries['builtins.getattr'] is history_buffer_statistic
    assert getattr not in checkpoint_safe_globals()


@pytest.mark.parametrize('owner, name', [(HistoryBuffer, '__init__'), (HistoryBuffer, 'update'),
                                         (np.ndarray, 'tofile'), (os, 'system')])
def test_history_buffer_statistic_refuses_anything_else(owner, name):
    with pytest.raises(pickle.UnpicklingError, match='may only fetch HistoryBuffer'):
        history_buffer_statistic(owner, name)


def test_history_buffer_statistic_resolves_the_four_statistics():
    for name in ('min', 'max', 'current', 'mean'):
        assert history_buffer_statistic(HistoryBuffer, name) is getattr(HistoryBuffer, name)


@pytest.mark.parametrize('make_payload, refused', [
    (lambda marker: Payload(os.system, f'touch {marker}'), 'posix.system'),
    (lambda marker: Payload(subprocess.call, ['touch', str(marker)]), 'subprocess.call'),
    (lambda marker: Payload(eval, f'open({str(marker)!r}, "w")'), 'builtins.eval'),
    (lambda marker: Payload(exec, f'open({str(marker)!r}, "w")'), 'builtins.exec'),
])
def test_payload_is_refused_and_never_runs(tmp_path, make_payload, refused):
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', make_payload(marker))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(str(path))
    assert not marker.exists()
    assert info.value.refused_global == refused
    assert info.value.checkpoint == str(path)
    assert str(info.value) == (
        f"refusing to load checkpoint {path}: it holds the pickled global '{refused}', which is not among "
        'the types mmengine/mmdet checkpoints contain (loaded with weights_only=True)')


def test_getattr_gadget_through_allowlisted_class_is_refused(tmp_path):
    # getattr is allowlisted under its name; fetching anything but a HistoryBuffer statistic must fail.
    path = poisoned(tmp_path / 'evil.pth', Payload(getattr, HistoryBuffer, 'update'))
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safely(str(path))
    assert "it holds the pickled global 'builtins.getattr' fetching HistoryBuffer.update," in str(info.value)


def test_env_var_forcing_unsafe_loads_does_not_weaken_it(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_safely(str(path))
    assert not marker.exists()


def test_custom_pickle_module_is_refused(tmp_path):
    path = mmengine_like_checkpoint(tmp_path / 'ckpt.pth')
    with pytest.raises(UnsafeCheckpointError, match='custom pickle_module'):
        load_checkpoint_safely(str(path), pickle_module=pickle)


def test_block_routes_explicit_weights_only_false_through_the_allowlist(tmp_path):
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    original = torch.load
    with weights_only_checkpoints():
        assert torch.load is load_checkpoint_safely
        with pytest.raises(UnsafeCheckpointError):
            torch.load(path, weights_only=False)
        with weights_only_checkpoints():  # re-entrant
            pass
        assert torch.load is load_checkpoint_safely
    assert torch.load is original
    assert not marker.exists()


def test_block_guards_mmengine_local_loader(tmp_path):
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    good = mmengine_like_checkpoint(tmp_path / 'good.pth')
    with weights_only_checkpoints():
        assert _load_checkpoint(str(good))['meta']['iter'] == 3
        with pytest.raises(UnsafeCheckpointError):
            _load_checkpoint(str(path))
    assert not marker.exists()


def test_block_guards_torch_hub_which_passes_weights_only_false(tmp_path, monkeypatch):
    # mmengine fetches http(s)://, torchvision:// and open-mmlab:// checkpoints with
    # torch.hub.load_state_dict_from_url, whose default is weights_only=False; file:// stands in for https.
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    marker = tmp_path / 'payload_ran'
    path = poisoned(tmp_path / 'evil.pth', Payload(os.system, f'touch {marker}'))
    with weights_only_checkpoints():
        with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
            torch.hub.load_state_dict_from_url(f'file://{path}', model_dir=str(tmp_path / 'hub'))
    assert not marker.exists()


def test_block_restores_torch_load_after_an_error():
    original = torch.load
    with pytest.raises(RuntimeError, match='boom'):
        with weights_only_checkpoints():
            raise RuntimeError('boom')
    assert torch.load is original


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
