"""ghm_mmdet.apis.mmdet_tools: the installed mmdet's own tools are found and run; only our own errors become
one line."""
import sys
from pathlib import Path

import mmdet
import pytest
import torch

from ghm_mmdet.apis import mmdet_tools
from ghm_mmdet.apis.checkpoint import UnsafeCheckpointError
from ghm_mmdet.apis.dist import ToolError
from ghm_mmdet.apis.mmdet_tools import EXIT_USER_ERROR, mmdet_tool, one_line_errors, run_mmdet_tool, user_mistake
from ghm_mmdet.models import GHMC

pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('name', ['train.py', 'test.py'])
def test_the_installed_mmdets_own_tool_is_found(name):
    tool = mmdet_tool(name)
    assert tool == Path(mmdet.__file__).resolve().parent / '.mim' / 'tools' / name
    assert 'def parse_args' in tool.read_text()  # mmdet's script itself, not ours


def fake_mmdet(monkeypatch, root: Path) -> Path:
    package = root / 'mmdet'
    package.mkdir(parents=True)
    (package / '__init__.py').write_text('')
    monkeypatch.setattr(mmdet, '__file__', str(package / '__init__.py'))
    return package


def test_an_mmdet_without_its_tools_is_named_with_the_fix(tmp_path, monkeypatch):
    package = fake_mmdet(monkeypatch, tmp_path / 'site-packages')
    (tmp_path / 'site-packages' / 'tools').mkdir()
    (tmp_path / 'site-packages' / 'tools' / 'train.py').write_text('')  # not mmdet's: no setup.py beside it
    with pytest.raises(ToolError) as info:
        mmdet_tool('train.py')
    message = str(info.value)
    assert message.startswith(f'the installed mmdet {mmdet.__version__} ({package}) has no tools/train.py: '
                              f'looked for {package}/.mim/tools/train.py. ')
    assert f"pip install 'mmdet=={mmdet.__version__}'" in message


def test_a_source_checkout_runs_the_tools_beside_its_package(tmp_path, monkeypatch):
    fake_mmdet(monkeypatch, tmp_path / 'mmdetection')
    (tmp_path / 'mmdetection' / 'setup.py').write_text('')
    (tmp_path / 'mmdetection' / 'tools').mkdir()
    (tmp_path / 'mmdetection' / 'tools' / 'test.py').write_text('')
    assert mmdet_tool('test.py') == tmp_path / 'mmdetection' / 'tools' / 'test.py'


def test_the_tool_runs_as_main_with_the_users_command_line(tmp_path, monkeypatch, capsys):
    tool = tmp_path / 'train.py'
    tool.write_text('import sys\nif __name__ == "__main__":\n    print(sys.argv)\n')
    monkeypatch.setattr(mmdet_tools, 'mmdet_tool', lambda name: tool)
    argv = sys.argv
    run_mmdet_tool('train.py', ['cfg.py', '--work-dir', 'w'])
    assert capsys.readouterr().out.strip() == repr([str(tool), 'cfg.py', '--work-dir', 'w'])
    assert sys.argv is argv


def test_a_distributed_cpu_run_reads_the_config_with_the_users_options(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('with CUDA nothing is added: the Runner starts NCCL itself')
    config = tmp_path / 'cfg.py'
    config.write_text('find_unused_parameters = False\n')
    assert mmdet_tools._distributed_cpu_config([str(config)]) is None
    assert mmdet_tools._distributed_cpu_config([str(config), '--launcher', 'none']) is None
    launcher, merged = mmdet_tools._distributed_cpu_config(
        [str(config), '--launcher', 'slurm', '--cfg-options', 'find_unused_parameters=True'])
    assert launcher == 'slurm' and merged.find_unused_parameters is True


def bins_zero_from_a_config():
    try:
        GHMC(bins=0)
    except Exception as error:  # noqa: BLE001
        return error


def bins_error_on_tensors():
    try:
        GHMC()(torch.zeros(2, 3), (torch.zeros(2), torch.zeros(2)))
    except Exception as error:  # noqa: BLE001
        return error


def test_only_our_own_errors_are_user_mistakes():
    assert user_mistake(ToolError('no tools\nmore')) == 'no tools'
    assert user_mistake(UnsafeCheckpointError('refusing to load checkpoint a.pth: ...')) == \
        'refusing to load checkpoint a.pth: ...'
    assert user_mistake(bins_zero_from_a_config()) == 'GHMC in the config: bins must be an int >= 1, got 0'
    # Raised on tensors, it may be a head's bug: its traceback stays.
    assert user_mistake(bins_error_on_tensors()) is None
    for error in (FileNotFoundError(2, 'No such file or directory', 'data/coco/x.json'),
                  KeyError('GHMRetinaHaed is not in the mmdet::model registry'), TypeError('bug')):
        assert user_mistake(error) is None


def test_a_user_mistake_is_one_line_and_anything_else_keeps_its_traceback(capsys, monkeypatch):
    monkeypatch.delenv('GHM_MMDET_TRACEBACK', raising=False)
    with pytest.raises(SystemExit) as info:
        with one_line_errors('test.py'):
            raise ToolError('--launcher slurm needs the environment variables SLURM_NTASKS, which srun sets')
    assert info.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err == ('test.py: error: --launcher slurm needs the environment variables '
                                       'SLURM_NTASKS, which srun sets\n')
    with pytest.raises(FileNotFoundError):
        with one_line_errors('test.py'):
            raise FileNotFoundError('nowhere.pth can not be found.')
    monkeypatch.setenv('GHM_MMDET_TRACEBACK', '1')
    with pytest.raises(ToolError):
        with one_line_errors('test.py'):
            raise ToolError('kept')
