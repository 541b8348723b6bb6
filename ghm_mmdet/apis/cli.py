"""``tools/train.py`` and ``tools/test.py``: mmdet 3.3's command lines, with weights-only checkpoint loading
for the run's checkpoint loaders, CPU (gloo) distributed runs and one-sentence failures (see
:mod:`.checkpoint`, :mod:`.dist`, :mod:`.errors`)."""
import argparse
import os
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

from .checkpoint import weights_only_checkpoint_loaders
from .config import configure_testing, configure_training, load_config
from .dist import LAUNCHERS, cpu_process_group
from .errors import plain_failures

_CFG_OPTIONS_HELP = (
    'override some settings in the used config, the key-value pair in xxx=yyy format will be merged into '
    'config file. If the value to be overwritten is a list, it should be like key="[a,b]" or key=a,b. It '
    'also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]". Note that the quotation marks are '
    'necessary and that no white space is allowed.')


def _add_common_tail(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help=_CFG_OPTIONS_HELP)
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none', help='job launcher')


def _add_local_rank(parser: argparse.ArgumentParser) -> None:
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank; torchrun passes neither.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def build_train_parser() -> argparse.ArgumentParser:
    """mmdet 3.3's ``tools/train.py`` arguments."""
    parser = argparse.ArgumentParser(prog='train.py', description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true', help='enable automatically scaling LR.')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='If specify checkpoint path, resume from it, while if not specify, try to auto '
                        'resume from the latest checkpoint in the work directory.')
    _add_common_tail(parser)
    _add_local_rank(parser)
    return parser


def build_test_parser() -> argparse.ArgumentParser:
    """mmdet 3.3's ``tools/test.py`` arguments."""
    parser = argparse.ArgumentParser(prog='test.py', description='MMDet test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', type=str, help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='directory where painted images will be saved. If specified, it '
                        'will be automatically saved to the work_dir/timestamp/show_dir')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    _add_common_tail(parser)
    parser.add_argument('--tta', action='store_true')
    _add_local_rank(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` and export ``LOCAL_RANK`` from ``--local-rank`` when no launcher set it (as mmdet)."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_runner(cfg: Config):
    """The Runner ``cfg`` asks for: mmengine's default, or ``runner_type`` from mmdet's registry."""
    from mmdet.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def _setup_dynamo_cache() -> None:
    from mmdet.utils import setup_cache_size_limit_of_dynamo
    setup_cache_size_limit_of_dynamo()


def run_train(argv: Optional[Sequence[str]] = None) -> None:
    """``tools/train.py``: build the config from ``argv``, then ``Runner.train()``.

    Exits with status 1 and one line on stderr for the mistakes :func:`.errors.explain` recognises.
    """
    args = parse_args(build_train_parser(), argv)
    with plain_failures('train.py', args.config) as inputs:
        _setup_dynamo_cache()
        cfg = configure_training(load_config(args.config, args.cfg_options), args)
        inputs.config = cfg
        with cpu_process_group(args.launcher, cfg), weights_only_checkpoint_loaders():
            _train(cfg)  # the Runner lives in _train: gone before the process group goes


def _train(cfg: Config) -> None:
    runner = build_runner(cfg)
    runner.train()
    report_outputs(runner)


def report_outputs(runner) -> None:
    """One line, from the main process, saying where the run left its checkpoint and logs."""
    from mmengine.dist import is_main_process
    if not is_main_process():
        return
    pointer = os.path.join(runner.work_dir, 'last_checkpoint')
    checkpoint = 'none saved'
    if os.path.isfile(pointer):
        with open(pointer) as f:
            checkpoint = f.read().strip()
    print(f'train.py: done; last checkpoint: {checkpoint}; logs: {runner.log_dir}', flush=True)


def run_test(argv: Optional[Sequence[str]] = None) -> dict:
    """``tools/test.py``: load the checkpoint into the config's model and ``Runner.test()``.

    Returns:
        dict: the metrics, e.g. ``{'coco/bbox_mAP': ...}``.
    """
    args = parse_args(build_test_parser(), argv)
    with plain_failures('test.py', args.config) as inputs:
        _setup_dynamo_cache()
        cfg = configure_testing(load_config(args.config, args.cfg_options), args)
        inputs.config = cfg
        with cpu_process_group(args.launcher, cfg), weights_only_checkpoint_loaders():
            return _test(cfg, args.out)  # the Runner lives in _test: gone before the process group goes


def _test(cfg: Config, out: Optional[str]) -> dict:
    runner = build_runner(cfg)
    if out is not None:
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=out))
    return runner.test()
