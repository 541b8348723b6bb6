"""Test a checkpoint with the installed mmdet's own ``tools/test.py``: its command line (``--help``), plus
weights-only checkpoint loading and CPU distributed runs (:mod:`ghm_mmdet.apis`)."""
from ghm_mmdet.apis import run_mmdet_tool

if __name__ == '__main__':
    run_mmdet_tool('test.py')
