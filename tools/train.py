"""Train a detector: mmdet 3.3's ``tools/train.py`` command line (see ``ghm_mmdet.apis.cli``).

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr] [--resume [CKPT]]
                                [--cfg-options K=V ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import warnings

# setuptools < 81 (pinned for mmcv 2.1.0) warns at every mmengine import; it would bury our one-line errors.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from ghm_mmdet.apis import run_train  # noqa: E402

if __name__ == '__main__':
    run_train()
