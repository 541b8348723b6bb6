"""Test (and evaluate) a checkpoint: mmdet 3.3's ``tools/test.py`` command line (see ``ghm_mmdet.apis.cli``).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl] [--show] [--show-dir DIR]
                                           [--wait-time S] [--cfg-options K=V ...] [--launcher ...] [--tta]
"""
import warnings

# setuptools < 81 (pinned for mmcv 2.1.0) warns at every mmengine import; it would bury our one-line errors.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

from ghm_mmdet.apis import run_test  # noqa: E402

if __name__ == '__main__':
    run_test()
