"""benchmarks/bench_overhead.py: its options, its table, and its quick mode end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_overhead as overhead
from benchmarks.compare_losses import SETTINGS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / 'benchmarks' / 'bench_overhead.py'


def test_overhead_command_line():
    full = overhead.parse_args([])
    assert full.settings == list(SETTINGS)
    assert (full.rounds, full.batches, full.loss_repeats) == (20, 4, 100)
    quick = overhead.parse_args(['--quick'])
    assert quick.settings == ['focal_l1', 'ghmc_ghmr'] and (quick.rounds, quick.batches) == (2, 1)
    assert quick.out_dir == Path('work_dirs/overhead_quick')
    # The ratios need the reference setting: it is added, in table order.
    assert overhead.parse_args(['--settings', 'ghmc_ghmr', 'bce_l1']).settings == [
        'bce_l1', 'focal_l1', 'ghmc_ghmr']
    assert overhead.parse_args(['--rounds', '3']).rounds == 3


@pytest.mark.parametrize('argv,message', [
    (['--batches', '0'], '--batches must be >= 1, got 0'),
    (['--rounds', '-1'], '--rounds must be >= 1, got -1'),
    (['--settings', 'nope'], "invalid choice: 'nope'"),
])
def test_overhead_options_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit) as error:
        overhead.parse_args(argv)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_overhead_table_reports_the_median_paired_ratio_to_focal():
    result = dict(
        step={'focal_l1': dict(median=0.200), 'ghmc_ghmr': dict(median=0.205)},
        round_ratios={'ghmc_ghmr': [0.98, 1.05, 1.01, 1.30, 0.90]},  # paired ratios: median 1.010
        loss_calls={
            'focal_l1': dict(loss_cls=dict(median=0.004, calls=3), loss_bbox=dict(median=0.001, calls=3)),
            'ghmc_ghmr': dict(loss_cls=dict(median=0.005, calls=3), loss_bbox=dict(median=0.0015, calls=1))})
    lines = overhead.overhead_table(result, ['focal_l1', 'ghmc_ghmr']).splitlines()
    assert lines[0] == ('| setting | ms / step | step / focal | per-round range | loss_cls ms | '
                        'loss_bbox ms |')
    assert lines[2] == '| `focal_l1` | 200.0 | 1.000 |  | 4.00 (3 calls) | 1.00 (3 calls) |'
    assert lines[3] == '| `ghmc_ghmr` | 205.0 | 1.010 | 0.900 to 1.300 | 5.00 (3 calls) | 1.50 (1 calls) |'


@pytest.mark.slow
def test_overhead_quick_mode_end_to_end(tmp_path):
    """``bench_overhead.py --quick``: both settings built in one process, timed on one batch of the small set."""
    out_dir = tmp_path / 'out'
    command = [sys.executable, str(SCRIPT), '--quick', '--out-dir', str(out_dir)]
    run = subprocess.run(command, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'per-parameter' not in run.stdout and 'NormalInit' not in run.stdout + run.stderr
    table = [line for line in (out_dir / 'overhead.md').read_text().splitlines() if line.startswith('| `')]
    cells = {line.split('|')[1].strip().strip('`'): [c.strip() for c in line.strip('|').split('|')[1:]]
             for line in table}
    assert list(cells) == ['focal_l1', 'ghmc_ghmr']
    assert cells['focal_l1'][1] == '1.000' and cells['focal_l1'][2] == ''
    for name, (step_ms, ratio, spread, loss_cls, loss_bbox) in cells.items():
        assert float(step_ms) > 0 and float(ratio) > 0, name
        # RetinaHead calls each loss once per FPN level: three on the demo.
        assert loss_cls.endswith('(3 calls)') and loss_bbox.endswith('(3 calls)'), name
    summary = json.loads((out_dir / 'overhead.json').read_text())
    assert (summary['rounds'], summary['batches']) == (2, 1)
    assert summary['settings'] == ['focal_l1', 'ghmc_ghmr']
    assert all(len(summary['step'][name]['samples']) == 2 for name in summary['settings'])
    assert len(summary['round_ratios']['ghmc_ghmr']) == 2
