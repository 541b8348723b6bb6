"""Overhead of GHMStatsHook: iteration time of the demo config's training with and without the hook.

Both variants train in this one process, in alternating legs (without, with, with, without, ...:
:func:`~benchmarks.timing.interleave`, so that a machine getting faster or slower over the run
favours neither), each a fresh
mmengine Runner on the same config and seed, so that machine drift affects both alike. The time of an
iteration is mmengine's ``IterTimerHook`` record (``train/time``: data, forward, backward, step and every
hook); the first ``--warmup`` iterations of each leg are dropped. The hook's cost falls on one iteration in
``interval`` (the one after a record), so besides the median, the mean is reported too.

    python benchmarks/bench_stats_hook.py                       # interval 50, 2 rounds of 200 iterations
    python benchmarks/bench_stats_hook.py --iters 8 --warmup 2 --rounds 1 --interval 2   # smoke check
"""
import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root, for benchmarks.*

import ghm_mmdet  # noqa: F401,E402  (registers the losses and GHMStatsHook; the config imports its dataset)
from benchmarks.compare_losses import DEMO_CONFIG  # noqa: E402
from benchmarks.timing import interleave, machine_description  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='bench_stats_hook.py', description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=str(DEMO_CONFIG))
    parser.add_argument('--interval', type=int, default=50, help="GHMStatsHook's interval")
    parser.add_argument('--iters', type=int, default=200, help='iterations per leg')
    parser.add_argument('--warmup', type=int, default=20, help='iterations dropped at the start of each leg')
    parser.add_argument('--rounds', type=int, default=2, help='pairs of legs (without, with)')
    parser.add_argument('--tensorboard', action='store_true',
                        help='add a TensorboardVisBackend to both variants (the hook then writes histograms)')
    args = parser.parse_args(argv)
    if args.warmup >= args.iters:
        parser.error(f'--warmup ({args.warmup}) must be below --iters ({args.iters})')
    return args


def leg_config(args, with_hook: bool, work_dir: str, name: str) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.work_dir = work_dir
    cfg.experiment_name = name  # one MessageHub and Visualizer per leg
    cfg.train_cfg.max_iters = args.iters
    cfg.train_cfg.val_begin = args.iters + 1  # no validation
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=args.iters + 1, save_last=False)
    cfg.default_hooks.logger.interval = args.interval
    cfg.custom_hooks = [dict(type='GHMStatsHook', interval=args.interval)] if with_hook else []
    if args.tensorboard:
        cfg.visualizer.vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
    return cfg


def run_leg(args, with_hook: bool, root: str):
    name = f'bench_stats_hook_{"with" if with_hook else "without"}_{time.time_ns()}'
    runner = Runner.from_cfg(leg_config(args, with_hook, str(Path(root) / name), name))
    runner.train()
    times = runner.message_hub.get_scalar('train/time').data[0].tolist()
    return times[args.warmup:]


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='bench_stats_hook_') as root:
        legs = {with_hook: partial(run_leg, args, with_hook, root) for with_hook in (False, True)}
        timings = interleave(legs, rounds=args.rounds)
    without, with_hook = timings.samples[False], timings.samples[True]
    median_ratio = statistics.median(with_hook) / statistics.median(without)
    mean_ratio = statistics.fmean(with_hook) / statistics.fmean(without)
    print(f'\nmachine: {machine_description()}, {torch.get_num_threads()} threads, config '
          f'{Path(args.config).name}, interval {args.interval}, {args.rounds} x {args.iters} iterations per '
          f'variant ({args.warmup} dropped per leg)')
    print('| variant | iterations | median s/iter | mean s/iter |')
    print('|---|---:|---:|---:|')
    for label, values in (('without GHMStatsHook', without), ('with GHMStatsHook', with_hook)):
        print(f'| {label} | {len(values)} | {statistics.median(values):.4f} '
              f'| {statistics.fmean(values):.4f} |')
    print(f'| ratio with / without | | {median_ratio:.3f} | {mean_ratio:.3f} |')
    ratios = timings.paired_ratios(True, False)  # equal iterations per leg: the ratio of the leg means
    print(f'\nper round, mean with / mean without: {", ".join(f"{r:.3f}" for r in ratios)} '
          f'(median {timings.median_ratio(True, False):.3f})')


if __name__ == '__main__':
    main()
