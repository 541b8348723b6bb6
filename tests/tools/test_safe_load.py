"""A checkpoint carrying a malicious pickle is refused by test.py and --resume; its payload never runs."""
import os
import subprocess

import pytest
import torch

from ghm_mmdet.apis import load_checkpoint_safely

from tool_runs import last_lines

pytestmark = [pytest.mark.slow, pytest.mark.compat]


class ShellPayload:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class SubprocessPayload:
    """Unpickling this runs ``subprocess.call(argv)``."""

    def __init__(self, argv):
        self.argv = argv

    def __reduce__(self):
        return subprocess.call, (self.argv,)


PAYLOADS = {
    'os.system': (lambda marker: ShellPayload(f'touch {marker}'), 'posix.system'),
    'subprocess.call': (lambda marker: SubprocessPayload(['touch', str(marker)]), 'subprocess.call'),
}


def poison(reference_run, tmp_path, payload_name):
    """A real training checkpoint (so that only the payload can make loading fail) with a payload in meta."""
    make_payload, refused = PAYLOADS[payload_name]
    marker = tmp_path / 'payload_ran'
    checkpoint = load_checkpoint_safely(str(reference_run.checkpoint(4)))
    checkpoint['meta']['note'] = make_payload(marker)
    path = tmp_path / 'iter_4.pth'
    torch.save(checkpoint, path)
    assert not marker.exists()
    return path, marker, refused


@pytest.fixture(params=sorted(PAYLOADS))
def poisoned_checkpoint(request, reference_run, tmp_path):
    return poison(reference_run, tmp_path, request.param)


@pytest.fixture
def shell_poisoned_checkpoint(reference_run, tmp_path):
    return poison(reference_run, tmp_path, 'os.system')


@pytest.fixture
def subprocess_poisoned_checkpoint(reference_run, tmp_path):
    return poison(reference_run, tmp_path, 'subprocess.call')


def expected_refusal(tool, path, refused):
    return (f"{tool}: error: refusing to load checkpoint {path}: it holds the pickled global '{refused}', "
            'which is not among the types mmengine/mmdet checkpoints contain (loaded with an allowlist)')


def test_test_py_refuses_poisoned_checkpoint_without_running_payload(tools, poisoned_checkpoint):
    path, marker, refused = poisoned_checkpoint
    run = tools.test(path)
    assert run.returncode == 1, last_lines(run.output)
    assert run.stderr.strip().splitlines()[-1] == expected_refusal('test.py', path, refused)
    assert 'Traceback' not in run.stderr
    assert not marker.exists()


def test_resume_refuses_poisoned_checkpoint_without_running_payload(tools, shell_poisoned_checkpoint,
                                                                   tmp_path):
    path, marker, refused = shell_poisoned_checkpoint
    run = tools.train(tmp_path / 'work', 'train_cfg.max_iters=8', args=['--resume', str(path)])
    assert run.returncode == 1, last_lines(run.output)
    assert run.stderr.strip().splitlines()[-1] == expected_refusal('train.py', path, refused)
    assert not marker.exists()
    assert not list((tmp_path / 'work').glob('iter_*.pth')), 'training went ahead'


def test_auto_resume_refuses_poisoned_last_checkpoint(tools, subprocess_poisoned_checkpoint):
    # `--resume` without a path takes the work dir's last_checkpoint: the same guard applies.
    path, marker, refused = subprocess_poisoned_checkpoint
    (path.parent / 'last_checkpoint').write_text(str(path))
    run = tools.train(path.parent, 'train_cfg.max_iters=8', args=['--resume'])
    assert run.returncode == 1, last_lines(run.output)
    assert run.stderr.strip().splitlines()[-1] == expected_refusal('train.py', path, refused)
    assert not marker.exists()
