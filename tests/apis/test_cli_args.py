"""ghm_mmdet.apis.cli: the command lines of mmdet 3.3's tools/train.py and tools/test.py."""
import os

import pytest

from ghm_mmdet.apis.cli import build_test_parser, build_train_parser, parse_args, run_test, run_train


def test_train_accepts_every_mmdet_option():
    args = build_train_parser().parse_args([
        'cfg.py', '--work-dir', 'w', '--amp', '--auto-scale-lr', '--resume', 'ck.pth',
        '--cfg-options', 'a.b=1', 'c=[1,2]', '--launcher', 'slurm', '--local-rank', '3'])
    assert (args.config, args.work_dir, args.amp, args.auto_scale_lr, args.resume) == \
        ('cfg.py', 'w', True, True, 'ck.pth')
    assert args.cfg_options == {'a.b': 1, 'c': [1, 2]}
    assert (args.launcher, args.local_rank) == ('slurm', 3)


def test_train_defaults():
    args = build_train_parser().parse_args(['cfg.py'])
    assert (args.work_dir, args.amp, args.auto_scale_lr, args.resume, args.cfg_options, args.launcher,
            args.local_rank) == (None, False, False, None, None, 'none', 0)


@pytest.mark.parametrize('argv, resume', [(['--resume'], 'auto'), (['--resume', 'x.pth'], 'x.pth'),
                                          (['--resume', '--amp'], 'auto')])
def test_resume_without_path_means_auto(argv, resume):
    assert build_train_parser().parse_args(['cfg.py', *argv]).resume == resume


@pytest.mark.parametrize('flag', ['--local-rank', '--local_rank'])
def test_both_spellings_of_local_rank(flag):
    assert build_train_parser().parse_args(['cfg.py', flag, '2']).local_rank == 2
    assert build_test_parser().parse_args(['cfg.py', 'ck.pth', flag, '2']).local_rank == 2


def test_unknown_launcher_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        build_train_parser().parse_args(['cfg.py', '--launcher', 'torchrun'])
    assert info.value.code == 2
    assert "invalid choice: 'torchrun'" in capsys.readouterr().err


def test_test_accepts_every_mmdet_option():
    args = build_test_parser().parse_args([
        'cfg.py', 'ck.pth', '--work-dir', 'w', '--out', 'r.pkl', '--show', '--show-dir', 'vis',
        '--wait-time', '0.5', '--cfg-options', 'x=1', '--launcher', 'pytorch', '--tta'])
    assert (args.config, args.checkpoint, args.work_dir, args.out, args.show, args.show_dir) == \
        ('cfg.py', 'ck.pth', 'w', 'r.pkl', True, 'vis')
    assert (args.wait_time, args.cfg_options, args.launcher, args.tta) == (0.5, {'x': 1}, 'pytorch', True)


def test_test_needs_a_checkpoint(capsys):
    with pytest.raises(SystemExit):
        build_test_parser().parse_args(['cfg.py'])
    assert 'checkpoint' in capsys.readouterr().err


def test_parse_args_exports_local_rank_unless_a_launcher_did(monkeypatch):
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    parse_args(build_train_parser(), ['cfg.py', '--local-rank', '5'])
    assert os.environ['LOCAL_RANK'] == '5'
    monkeypatch.setenv('LOCAL_RANK', '1')
    parse_args(build_train_parser(), ['cfg.py', '--local-rank', '5'])
    assert os.environ['LOCAL_RANK'] == '1'


def stop_sentence(capsys, main, argv):
    """What a tool prints when it stops on a user mistake: its exit status and stderr lines."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err.splitlines()


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / 'config.py'
    path.write_text("model = dict(type='RetinaNet')\n")
    return path


def test_run_train_missing_config(capsys, tmp_path):
    missing = tmp_path / 'retinanet_ghm_dmeo.py'
    assert stop_sentence(capsys, run_train, [str(missing)]) == \
        (1, [f'train.py: error: config file {missing} does not exist'])


def test_run_train_missing_resume_checkpoint(capsys, config_file, tmp_path):
    missing = tmp_path / 'iter_4.pth'
    assert stop_sentence(capsys, run_train, [str(config_file), '--resume', str(missing)]) == \
        (1, [f'train.py: error: resume checkpoint file {missing} does not exist'])


def test_run_train_missing_load_from_checkpoint(capsys, config_file, tmp_path):
    missing = tmp_path / 'pretrained.pth'
    argv = [str(config_file), '--cfg-options', f'load_from={missing}']
    assert stop_sentence(capsys, run_train, argv) == \
        (1, [f'train.py: error: load_from checkpoint file {missing} does not exist'])


def test_run_train_config_with_syntax_error(capsys, config_file):
    config_file.write_text("_base_ = './x.py'\nmodel = dict(type='RetinaNet'\n")
    assert stop_sentence(capsys, run_train, [str(config_file)]) == \
        (1, [f"train.py: error: config file {config_file} could not be read: '(' was never closed (line 2)"])


def test_run_test_missing_checkpoint(capsys, config_file, tmp_path):
    missing = tmp_path / 'epoch_12.pth'
    assert stop_sentence(capsys, run_test, [str(config_file), str(missing)]) == \
        (1, [f'test.py: error: checkpoint file {missing} does not exist'])


def test_run_test_out_must_be_pickle(capsys, config_file, tmp_path):
    checkpoint = tmp_path / 'latest.pth'
    checkpoint.write_bytes(b'')
    assert stop_sentence(capsys, run_test, [str(config_file), str(checkpoint), '--out', 'r.json']) == \
        (1, ['test.py: error: --out r.json must name a .pkl or .pickle file'])
