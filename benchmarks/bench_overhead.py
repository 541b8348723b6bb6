"""GHM's training-time overhead over Focal + L1: mmengine's ``train_step`` and the loss calls of every loss
setting of the comparison (``benchmarks/compare_losses.py``), all in this one process.

Every setting is built from the same seed and stepped in turn on the same demo batches (data
preprocessing, forward, backward, gradient clipping, SGD step), the order reversed every round
(:func:`~benchmarks.timing.interleave`); on the first batch, each loss's calls (forward +
backward) are timed on the inputs the head gives it. Writes ``overhead.md`` and ``overhead.json``.

    python benchmarks/bench_overhead.py            # every setting, 20 rounds x 4 batches
    python benchmarks/bench_overhead.py --quick    # smoke check on the small data set
"""
import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root, for benchmarks.*

from benchmarks.compare_losses import QUICK_SETTINGS, SETTINGS, TIME_REFERENCE, Setting, build_config  # noqa: E402
from benchmarks.timing import interleave, machine_description  # noqa: E402

#: The defaults: every setting, this many timed rounds over this many batches (after one untimed round),
#: and ``--quick``'s.
OVERHEAD_ROUNDS, OVERHEAD_BATCHES = 20, 4
QUICK_OVERHEAD_ROUNDS, QUICK_OVERHEAD_BATCHES = 2, 1
#: Timed repeats of each setting's loss calls on the captured inputs of one batch.
LOSS_CALL_REPEATS, QUICK_LOSS_CALL_REPEATS = 100, 3


@dataclass
class Trainer:
    """One setting built for in-process timing: its config, model and optimizer wrapper."""
    cfg: object
    model: object
    optim_wrapper: object


def build_trainer(setting: Setting, seed: int, small_data: bool) -> Trainer:
    """Build ``setting``'s model (initialised from ``seed``, so every setting starts from the same weights)
    and its optimizer wrapper (the demo's SGD with gradient clipping), as ``tools/train.py`` would."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    cfg = build_config(setting, seed, small_data=small_data)
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    return Trainer(cfg, model, build_optim_wrapper(model, cfg.optim_wrapper))


def demo_batches(cfg, count: int, seed: int) -> list:
    """The first ``count`` batches of ``cfg``'s training loader (in this process, no worker)."""
    from mmengine.runner import Runner
    loader_cfg = dict(cfg.train_dataloader, num_workers=0, persistent_workers=False)
    batches = []
    for batch in Runner.build_dataloader(loader_cfg, seed=seed):
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


def capture_loss_inputs(trainer: Trainer, batch) -> Dict[str, list]:
    """The ``(args, kwargs)`` of every call of the head's ``loss_cls`` and ``loss_bbox`` during one
    forward (detached copies), by forward pre-hooks; the step is not applied."""
    import torch
    head = trainer.model.bbox_head
    calls: Dict[str, list] = {'loss_cls': [], 'loss_bbox': []}

    def copy(value):
        return value.detach().clone() if isinstance(value, torch.Tensor) else value

    def recorder(name):
        def hook(module, args, kwargs):
            calls[name].append(([copy(a) for a in args], {k: copy(v) for k, v in kwargs.items()}))
        return hook

    handles = [getattr(head, name).register_forward_pre_hook(recorder(name), with_kwargs=True)
               for name in calls]
    try:
        data = trainer.model.data_preprocessor(batch, True)
        trainer.model.loss(data['inputs'], data['data_samples'])
    finally:
        for handle in handles:
            handle.remove()
    return calls


def time_loss_calls(module, calls: list) -> float:
    """Seconds of one iteration's calls of ``module`` (forward + backward of each captured call)."""
    start = time.perf_counter()
    for args, kwargs in calls:
        pred = args[0].clone().requires_grad_()
        module(pred, *args[1:], **kwargs).backward()
    return time.perf_counter() - start


def measure_overhead(names: Sequence[str], rounds: int, num_batches: int, loss_repeats: int,
                     small_data: bool, seed: int = 0) -> dict:
    """Median seconds per training step and per iteration's loss calls of each setting, in this process.

    Every round steps each setting once on each of the same batches, taking turns as
    :func:`~benchmarks.timing.interleave` does; the first round is not timed. The loss calls are
    timed on the inputs each setting's head gave its losses for the first batch before any step, taking
    turns the same way.

    Returns:
        dict with ``step`` (per setting: median seconds and every sample), ``round_ratios`` (per setting
        other than :data:`TIME_REFERENCE`: the ratio of its summed step time to the reference's in each
        round) and ``loss_calls`` (per setting: median seconds of ``loss_cls`` and ``loss_bbox`` per
        iteration, and the number of calls).
    """
    from mmengine.logging import MMLogger
    MMLogger.get_instance('compare_losses_overhead', log_level='WARNING')  # no per-parameter init report
    trainers = {name: build_trainer(SETTINGS[name], seed, small_data) for name in names}
    batches = demo_batches(next(iter(trainers.values())).cfg, num_batches, seed)

    losses = {name: capture_loss_inputs(trainer, batches[0]) for name, trainer in trainers.items()}
    call_legs = {(name, part): (lambda name=name, part=part: time_loss_calls(
        getattr(trainers[name].model.bbox_head, part), losses[name][part]))
        for name in names for part in losses[name]}
    calls = interleave(call_legs, rounds=loss_repeats, untimed_rounds=1)

    def step_leg(trainer):
        seconds = []
        for batch in batches:
            start = time.perf_counter()
            trainer.model.train_step(batch, trainer.optim_wrapper)
            seconds.append(time.perf_counter() - start)
        return seconds
    steps = interleave({name: (lambda trainer=trainers[name]: step_leg(trainer)) for name in names},
                       rounds=rounds, untimed_rounds=1)

    reference = TIME_REFERENCE if TIME_REFERENCE in names else None
    return dict(
        step={name: dict(median=steps.median(name), samples=steps.samples[name]) for name in names},
        round_ratios={name: steps.paired_ratios(name, reference)
                      for name in names if reference and name != reference},
        loss_calls={name: {part: dict(median=calls.median((name, part)), calls=len(losses[name][part]))
                           for part in losses[name]}
                    for name in names})


def overhead_table(result: dict, names: Sequence[str]) -> str:
    """The overhead table: per setting, the median ms per step; the median over rounds of the ratio
    of its summed step time to :data:`TIME_REFERENCE`'s in the same round (paired, so a change of the
    machine's speed between rounds cancels), with the range of those ratios; and ms per iteration of each
    loss's calls."""
    step, calls = result['step'], result['loss_calls']
    header = ('setting', 'ms / step', 'step / focal', 'per-round range', 'loss_cls ms', 'loss_bbox ms')
    lines = ['| ' + ' | '.join(header) + ' |', '|---|' + '---:|' * (len(header) - 1)]
    for name in names:
        median = step[name]['median']
        rounds = result['round_ratios'].get(name)
        ratio = '1.000' if name == TIME_REFERENCE else (f'{statistics.median(rounds):.3f}' if rounds else '')
        spread = f'{min(rounds):.3f} to {max(rounds):.3f}' if rounds else ''
        parts = [f'{calls[name][part]["median"] * 1e3:.2f} ({calls[name][part]["calls"]} calls)'
                 for part in ('loss_cls', 'loss_bbox')]
        lines.append(f'| `{name}` | {median * 1e3:.1f} | {ratio} | {spread} | ' + ' | '.join(parts) + ' |')
    return '\n'.join(lines)


def write_overhead(out_dir: Path, result: dict, args: argparse.Namespace, command: Sequence[str]) -> None:
    """Write ``overhead.md`` and ``overhead.json`` into ``out_dir``."""
    machine = machine_description()
    date = datetime.now().strftime('%Y-%m-%d')
    table = overhead_table(result, args.settings)
    data = 'the small set of `--quick`' if args.quick else 'the demo set'
    report = (
        f'# Training-step time on the demo data\n\n'
        f'`configs/retinanet_ghm_demo.py` on {data}: median ms of one `train_step` (preprocessing, forward, '
        f'backward, clipping, SGD step) over {args.rounds} rounds x {args.batches} batches, every setting '
        f'in this one process, built from seed {args.seed} and stepped in turn on the same batches '
        f'(order reversed every round); step / focal: the median over rounds of the ratio of one round\'s '
        f'summed step time to `{TIME_REFERENCE}`\'s in the same round, and their range. Loss columns: '
        f'median ms of one iteration\'s calls of that loss (forward + backward) on the inputs the head gave '
        f'it for the first batch, over {args.loss_repeats} repeats.\n'
        f'Machine: {machine}; {date}.\n\n{table}\n')
    (out_dir / 'overhead.md').write_text(report)
    summary = dict(date=date, machine=machine, rounds=args.rounds, batches=args.batches,
                   loss_repeats=args.loss_repeats, settings=list(args.settings), command=list(command),
                   **result)
    (out_dir / 'overhead.json').write_text(json.dumps(summary, indent=1) + '\n')
    print(f'\n{table}\n\nbench_overhead: wrote {out_dir / "overhead.md"}, {out_dir / "overhead.json"}',
          flush=True)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='bench_overhead.py', description=__doc__.splitlines()[0])
    parser.add_argument('--settings', nargs='+', choices=list(SETTINGS), metavar='SETTING',
                        help=f'settings to time (default: all of {", ".join(SETTINGS)}; --quick: '
                        f'{" ".join(QUICK_SETTINGS)}; {TIME_REFERENCE} is always added, the ratios need it)')
    parser.add_argument('--seed', type=int, default=0, help='the seed every setting is built from')
    parser.add_argument('--quick', action='store_true', help='smoke check: the small data set and few rounds')
    parser.add_argument('--rounds', type=int, help=f'timed rounds (default {OVERHEAD_ROUNDS}; --quick: '
                        f'{QUICK_OVERHEAD_ROUNDS})')
    parser.add_argument('--batches', type=int, help=f'batches per round (default {OVERHEAD_BATCHES}; --quick: '
                        f'{QUICK_OVERHEAD_BATCHES})')
    parser.add_argument('--loss-repeats', type=int, help=f'timed repeats of the loss calls (default '
                        f'{LOSS_CALL_REPEATS}; --quick: {QUICK_LOSS_CALL_REPEATS})')
    parser.add_argument('--out-dir', type=Path, help='default: work_dirs/overhead (work_dirs/overhead_quick)')
    args = parser.parse_args(argv)
    for name, full, quick in (('rounds', OVERHEAD_ROUNDS, QUICK_OVERHEAD_ROUNDS),
                              ('batches', OVERHEAD_BATCHES, QUICK_OVERHEAD_BATCHES),
                              ('loss_repeats', LOSS_CALL_REPEATS, QUICK_LOSS_CALL_REPEATS)):
        value = getattr(args, name)
        if value is None:
            setattr(args, name, quick if args.quick else full)
        elif value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {value}')
    named = args.settings or list(QUICK_SETTINGS if args.quick else SETTINGS)
    args.settings = [name for name in SETTINGS if name in (TIME_REFERENCE, *named)]  # table order
    if args.out_dir is None:
        args.out_dir = Path('work_dirs') / ('overhead_quick' if args.quick else 'overhead')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, 'benchmarks/bench_overhead.py', *(sys.argv[1:] if argv is None else argv)]
    print(f'bench_overhead: {", ".join(args.settings)}, {args.rounds} rounds x {args.batches} batches, '
          f'seed {args.seed}', flush=True)
    result = measure_overhead(args.settings, args.rounds, args.batches, args.loss_repeats, args.quick,
                              seed=args.seed)
    write_overhead(args.out_dir, result, args, command)


if __name__ == '__main__':
    main()
