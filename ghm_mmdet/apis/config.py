"""Building the run's config from the command line, as mmdet 3.3's ``tools/train.py`` and ``test.py`` do.

Priority is the same as mmdet's: ``--cfg-options`` over the config file, ``--work-dir`` over the file's
``work_dir`` over ``./work_dirs/<config name>``, ``--resume`` over ``load_from``. What differs: files the run
needs are checked here first, so that a missing one is reported as one sentence naming it.
"""
import argparse
import os.path as osp
import warnings
from copy import deepcopy
from typing import Optional

from mmengine.config import Config, ConfigDict
from mmengine.device import get_device

from .checkpoint import is_local_path
from .errors import ToolError

_AMP_DEVICES = ('cuda', 'npu', 'mlu', 'musa')  # where mmengine's AmpOptimWrapper runs


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file and merge ``--cfg-options`` into it.

    Raises:
        ToolError: ``path`` is not a file, or reading it (or a ``_base_`` of it) failed: the config is the
            user's Python code, so whatever it raised is reported as the config's fault, in one line.
    """
    if not osp.isfile(path):
        raise ToolError(f'config file {path} does not exist')
    try:
        cfg = Config.fromfile(path)
    except Exception as error:  # noqa: BLE001  (any failure here is in the user's config code)
        raise ToolError(f'config file {path} could not be read: {_one_line(error)}') from error
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as error:  # noqa: BLE001
            raise ToolError(f'--cfg-options could not be merged into config {path}: '
                            f'{_one_line(error)}') from error
    return cfg


def _one_line(error: BaseException) -> str:
    if isinstance(error, SyntaxError) and error.lineno is not None:
        where = error.filename if error.filename and not error.filename.startswith('<') else None
        return f'{error.msg} ({where + ", " if where else ""}line {error.lineno})'
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'.rstrip(': ')


def check_checkpoint_file(path: str, role: str = 'checkpoint') -> None:
    """Raise :class:`ToolError` naming ``path`` if it is a local path that is not a file.

    Remote checkpoints (``https://``, ``open-mmlab://``...) are left for the loader to fetch.
    """
    if is_local_path(path) and not osp.isfile(osp.expanduser(path)):
        raise ToolError(f'{role} file {path} does not exist')


def _set_work_dir(cfg: Config, work_dir: Optional[str], config_path: str) -> None:
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def configure_training(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``tools/train.py``'s options (:func:`.cli.build_train_parser`) to ``cfg`` in place.

    Returns:
        Config: ``cfg``, with ``launcher``, ``work_dir``, AMP, LR auto-scaling, ``resume`` and ``load_from``
        set as mmdet 3.3's ``tools/train.py`` sets them.

    Raises:
        ToolError: ``--amp`` without an accelerator, ``--auto-scale-lr`` without
            ``auto_scale_lr.base_batch_size`` in the config, or a local ``--resume``/``load_from`` checkpoint
            that does not exist.
    """
    cfg.launcher = args.launcher
    _set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        if get_device() not in _AMP_DEVICES:
            raise ToolError(f'--amp (AmpOptimWrapper) needs a GPU, NPU, MLU or MUSA device; this machine '
                            f'has only {get_device()}')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        scaling = cfg.get('auto_scale_lr', None)
        if not scaling or 'enable' not in scaling or 'base_batch_size' not in scaling:
            raise ToolError(f'--auto-scale-lr needs auto_scale_lr=dict(enable=..., base_batch_size=...) '
                            f'in config {args.config}')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_checkpoint_file(args.resume, 'resume checkpoint')
        cfg.resume = True
        cfg.load_from = args.resume
    elif cfg.get('load_from', None):
        check_checkpoint_file(cfg.load_from, 'load_from checkpoint')
    return cfg


def _default_tta(cfg: Config) -> None:
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, we will set it as default.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        cfg.tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                [dict(type='PackDetInputs',
                      meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                                 'flip_direction'))],
            ])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def configure_testing(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``tools/test.py``'s options (:func:`.cli.build_test_parser`) to ``cfg`` in place.

    Returns:
        Config: ``cfg``, with ``launcher``, ``work_dir``, ``load_from`` (the checkpoint), visualisation for
        ``--show``/``--show-dir`` and the TTA model for ``--tta``, as mmdet 3.3's ``tools/test.py`` sets them.

    Raises:
        ToolError: a local checkpoint that does not exist, ``--out`` not ending in ``.pkl``/``.pickle``, or
            ``--show``/``--show-dir`` with no ``default_hooks.visualization`` in the config.
    """
    check_checkpoint_file(args.checkpoint)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ToolError(f'--out {args.out} must name a .pkl or .pickle file')
    cfg.launcher = args.launcher
    _set_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        hooks = cfg.get('default_hooks', None) or {}
        if 'visualization' not in hooks:
            raise ToolError(f"--show/--show-dir need default_hooks.visualization=dict(type='"
                            f"DetVisualizationHook') in config {args.config}")
        hook = cfg.default_hooks.visualization
        hook.draw = True
        if args.show:
            hook.show = True
            hook.wait_time = args.wait_time
        if args.show_dir:
            hook.test_out_dir = args.show_dir
    if args.tta:
        _default_tta(cfg)
    return cfg
