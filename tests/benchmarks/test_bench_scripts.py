"""benchmarks/bench_losses.py and bench_stats_hook.py, through their quick modes: they run and report the
rows they promise, with the anchor's own speed-up exactly 1."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_script(name, *args, cwd):
    run = subprocess.run([sys.executable, str(REPO / 'benchmarks' / name), *args], cwd=cwd,
                         env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def table_rows(text):
    return {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip('|').split('|')] for line in text.splitlines()
             if line.startswith('| ') and not line.startswith('| loss') and not line.startswith('| variant'))}


def test_bench_losses_quick(tmp_path):
    out = run_script('bench_losses.py', '--anchors', '3000', '--classes', '8', '--repeats', '3', '--warmup', '1',
                     '--no-compile', '--device', 'cpu', cwd=tmp_path)
    rows = table_rows(out)
    assert set(rows) == {'ghm_mmdet GHMC (eager)', 'mmdet GHMC (built-in)', 'mmdet FocalLoss',
                         'ghm_mmdet GHMR (eager)', 'mmdet GHMR (built-in)', 'mmdet L1Loss', 'mmdet SmoothL1Loss'}
    assert rows['mmdet GHMC (built-in)'][1] == '1.0x' and rows['mmdet GHMR (built-in)'][1] == '1.0x'
    assert rows['mmdet FocalLoss'][2] == '1.00'  # time / FocalLoss of FocalLoss itself
    assert all(float(cells[0]) > 0 for cells in rows.values())


def test_bench_losses_routes_quick(tmp_path):
    out = run_script('bench_losses.py', '--routes', '--anchors', '2000', '--classes', '8', '--repeats', '2',
                     '--device', 'cpu', cwd=tmp_path)
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in out.splitlines()
            if line.startswith('| GHM-')]
    assert [(loss, route) for loss, route, *_ in rows] == [('GHM-C', 'LABEL_FUSED'), ('GHM-C', 'DENSE'),
                                                          ('GHM-R', 'SELECTED'), ('GHM-R', 'DENSE')]
    assert rows[0][3] == '1.00' and rows[2][3] == '1.00'  # the route the CPU takes is the reference
    assert all(float(row[2]) > 0 for row in rows)


@pytest.mark.slow
def test_bench_stats_hook_quick(tmp_path):
    out = run_script('bench_stats_hook.py', '--iters', '6', '--warmup', '2', '--rounds', '2', '--interval', '2',
                     cwd=tmp_path)
    rows = table_rows(out)
    assert rows['without GHMStatsHook'][0] == rows['with GHMStatsHook'][0] == '8'  # 2 rounds x (6 - 2)
    assert float(rows['ratio with / without'][2]) > 0
    assert 'per round, mean with / mean without:' in out
