"""Forward + backward time and peak extra memory of GHM-C / GHM-R at RetinaNet scale, against mmdet's losses.

Input: two 800x1333 images -> 401,400 anchors x 80 classes, about 1% positive and 5% ignored anchors,
labels given as integers (as RetinaHead passes them); GHM-R on the positive anchors' 4-d deltas.
Every variant runs in this one process on the same tensors, taking turns with the others
(:func:`~benchmarks.timing.interleave`); a speed-up is the median over repeats of the paired
ratio to mmdet's built-in in the same repeat, so the ratios compare like with like on whatever machine
runs it.

    python benchmarks/bench_losses.py                 # full scale, CPU (and CUDA if present)
    python benchmarks/bench_losses.py --anchors 20000 # quick look

Peak extra memory on the CPU is the rise of the process's resident high-water mark (``VmHWM``, reset
through ``/proc/self/clear_refs``) over the resident size before the call: large tensors are mmap'd by
glibc and returned on free (the script pins glibc's mmap and trim thresholds so that this holds for every
size), so this tracks the live tensors of the call, the gradient included. On CUDA it is
``torch.cuda.max_memory_allocated`` over the allocation before the call.
"""
import argparse
import ctypes
import ctypes.util
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch
from mmdet.models.losses import FocalLoss, L1Loss, SmoothL1Loss
from mmdet.models.losses import ghm_loss as mmdet_ghm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root, for benchmarks.*

import ghm_mmdet  # noqa: F401,E402
from benchmarks.timing import interleave  # noqa: E402
from ghm_mmdet.models.losses import GHMC, GHMR  # noqa: E402


def make_inputs(num_anchors, num_classes, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # RetinaNet's classification bias starts at -log((1 - 0.01) / 0.01) ~ -4.6: mostly easy negatives.
    logits = torch.randn(num_anchors, num_classes, generator=generator) * 1.5 - 4.6
    labels = torch.full((num_anchors,), num_classes, dtype=torch.long)
    positive = torch.rand(num_anchors, generator=generator) < 0.01
    labels[positive] = torch.randint(0, num_classes, (int(positive.sum()),), generator=generator)
    label_weights = (torch.rand(num_anchors, generator=generator) >= 0.05).float()
    num_pos = int(positive.sum())
    deltas = torch.randn(num_pos, 4, generator=generator) * 0.5
    delta_targets = torch.randn(num_pos, 4, generator=generator) * 0.5
    box_weights = torch.ones(num_pos, 4)
    tensors = dict(logits=logits, labels=labels, label_weights=label_weights, deltas=deltas,
                   delta_targets=delta_targets, box_weights=box_weights)
    return {k: v.to(device) for k, v in tensors.items()}, max(num_pos, 1)


def pin_glibc_malloc():
    """Serve every allocation above 64 KiB by mmap and return freed memory at once.

    glibc raises its mmap threshold (up to 32 MiB) after frees, after which mid-sized temporaries come
    from an already-resident heap and the high-water mark undercounts them.
    """
    libc_name = ctypes.util.find_library('c')
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name)
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 * 1024)
    libc.mallopt(m_trim_threshold, 0)


def _resident_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def run_once(loss_fn, pred, *args):
    pred.grad = None
    loss = loss_fn(pred, *args)
    loss.backward()
    return loss


def peak_extra_bytes(loss_fn, pred, *args):
    """Peak memory the call adds on top of what was allocated before it."""
    if pred.is_cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_once(loss_fn, pred, *args)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    pred.grad = None
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    before = _resident_kib('VmRSS')
    run_once(loss_fn, pred, *args)
    return (_resident_kib('VmHWM') - before) * 1024


def time_calls(calls, pred, *args, warmup, repeats):
    """Every call's forward + backward, taking turns (:func:`~benchmarks.timing.interleave`):
    ``warmup`` untimed rounds, then ``repeats`` timed ones."""
    sync = torch.cuda.synchronize if pred.is_cuda else (lambda: None)

    def leg(call):
        sync()
        start = time.perf_counter()
        run_once(call, pred, *args)
        sync()
        return time.perf_counter() - start
    return interleave({index: partial(leg, call) for index, call in enumerate(calls)}, rounds=repeats,
                      untimed_rounds=warmup)


def classification_variants(num_classes, compile_ours):
    ghm = dict(bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
    variants = [('ghm_mmdet GHMC (eager)', GHMC(**ghm)),
                ('mmdet GHMC (built-in)', mmdet_ghm.GHMC(**ghm)),
                ('mmdet FocalLoss', FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25))]
    if compile_ours:
        variants.insert(1, ('ghm_mmdet GHMC (torch.compile)',
                            torch.compile(GHMC(**ghm), fullgraph=True, dynamic=True)))
    return variants


def regression_variants(compile_ours):
    ghm = dict(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
    variants = [('ghm_mmdet GHMR (eager)', GHMR(**ghm)),
                ('mmdet GHMR (built-in)', mmdet_ghm.GHMR(**ghm)),
                ('mmdet L1Loss', L1Loss()),
                ('mmdet SmoothL1Loss', SmoothL1Loss(beta=0.11))]
    if compile_ours:
        variants.insert(1, ('ghm_mmdet GHMR (torch.compile)',
                            torch.compile(GHMR(**ghm), fullgraph=True, dynamic=True)))
    return variants


def bench(device, args):
    inputs, num_pos = make_inputs(args.anchors, args.classes, device)
    logits = inputs['logits'].requires_grad_()
    deltas = inputs['deltas'].requires_grad_()
    logits_bytes = logits.numel() * logits.element_size()
    timed = []
    tasks = [('cls', classification_variants(args.classes, not args.no_compile), logits,
              (inputs['labels'], inputs['label_weights']), args.repeats),
             ('reg', regression_variants(not args.no_compile), deltas,
              (inputs['delta_targets'], inputs['box_weights']), args.repeats * 4)]
    for task, variants, pred, targets, repeats in tasks:
        calls = [partial(module.to(device), avg_factor=num_pos) for _, module in variants]
        timings = time_calls(calls, pred, *targets, warmup=args.warmup, repeats=repeats)
        anchor = next(i for i, (name, _) in enumerate(variants) if name == ANCHORS[task])
        timed += [(task, name, call, timings.median(i), timings.median_ratio(anchor, i), pred, targets)
                  for i, ((name, _), call) in enumerate(zip(variants, calls))]
    # Memory last: pinning malloc would slow allocation-heavy variants and skew the timings above.
    pin_glibc_malloc()
    rows = [(task, name, median, speed_up, peak_extra_bytes(call, pred, *targets))
            for task, name, call, median, speed_up, pred, targets in timed]
    return rows, logits_bytes, num_pos


#: What each task's speed-up is measured against.
ANCHORS = dict(cls='mmdet GHMC (built-in)', reg='mmdet GHMR (built-in)')


def report(device, rows, logits_bytes, num_pos, args):
    focal = next(seconds for task, name, seconds, _, _ in rows if name == 'mmdet FocalLoss')
    print(f'\n### {device_name(device)}\n')
    print(f'{args.anchors} anchors x {args.classes} classes ({num_pos} positive), forward + backward, '
          f'median of {args.repeats} (regression: {args.repeats * 4}) after {args.warmup} warm-up.\n')
    print('| loss | median ms | speed-up vs mmdet built-in | time / FocalLoss | peak extra MiB | '
          'peak extra / logits |')
    print('|---|---:|---:|---:|---:|---:|')
    for task, name, seconds, speed_up, extra in rows:
        vs_focal = f'{seconds / focal:.2f}' if task == 'cls' else ''
        ratio = f'{extra / logits_bytes:.2f}' if task == 'cls' else ''
        speed = f'{speed_up:.1f}x' if speed_up is not None else ''
        print(f'| {name} | {seconds * 1e3:.1f} | {speed} | {vs_focal} | {extra / 2**20:.1f} | {ratio} |')


def device_name(device):
    if device == 'cuda':
        return f'CUDA: {torch.cuda.get_device_name()}, torch {torch.__version__}'
    return (f'CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, '
            f'torch {torch.__version__}')


def check_sync_free():
    """On CUDA, ours must run forward + backward with sync debug mode 'error' (no host sync)."""
    inputs, num_pos = make_inputs(4096, 80, 'cuda')
    modules = [(GHMC(bins=30, momentum=0.75).cuda(), inputs['logits'], inputs['labels'],
                inputs['label_weights']),
               (GHMR(mu=0.02, bins=10, momentum=0.7).cuda(), inputs['deltas'],
                inputs['delta_targets'], inputs['box_weights'])]
    for module, pred, target, weight in modules:
        pred.requires_grad_()
        torch.cuda.set_sync_debug_mode('error')
        try:
            run_once(module, pred, target, weight)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    print("\nsync debug mode 'error': GHMC and GHMR forward + backward ran with no host sync")


def cuda_focal_row(args):
    """mmcv's CUDA sigmoid_focal_loss, the fastest anchor on a GPU."""
    from mmcv.ops import sigmoid_focal_loss
    inputs, num_pos = make_inputs(args.anchors, args.classes, 'cuda')
    logits = inputs['logits'].requires_grad_()

    def call(pred, labels, weights):
        return sigmoid_focal_loss(pred, labels, 2.0, 0.25, weights[:, None].expand_as(pred),
                                  'sum') / num_pos

    return time_calls([call], logits, inputs['labels'], inputs['label_weights'],
                      warmup=args.warmup, repeats=args.repeats).median(0)


def bench_routes(device, args):
    """Every eager route of the core on the same inputs, forced through ``choose_route``: GHM-C from labels
    (``LABEL_FUSED`` against ``DENSE``) and GHM-R on all anchors' deltas with RetinaHead's sparse weights
    (``SELECTED`` against ``DENSE``). Rows: ``(loss, route, median s, time / the route chosen here, peak
    extra bytes)``."""
    from unittest import mock

    from ghm_mmdet.core import ghm_c_loss, ghm_r_loss, losses
    from ghm_mmdet.core.routes import Route, choose_route
    inputs, num_pos = make_inputs(args.anchors, args.classes, device)
    logits = inputs['logits'].requires_grad_()
    valid = inputs['label_weights'] > 0
    generator = torch.Generator().manual_seed(1)
    deltas = (torch.randn(args.anchors, 4, generator=generator) * 0.5).to(device).requires_grad_()
    targets = (torch.randn(args.anchors, 4, generator=generator) * 0.5).to(device)
    weights = (inputs['labels'] < args.classes).float()[:, None].expand(-1, 4).contiguous()
    tasks = [('GHM-C', (Route.LABEL_FUSED, Route.DENSE), logits,
              lambda x: ghm_c_loss(x, inputs['labels'], valid, bins=30, momentum=0.75)[0], dict(labels=True)),
             ('GHM-R', (Route.SELECTED, Route.DENSE), deltas,
              lambda x: ghm_r_loss(x, targets, weights, mu=0.02, bins=10, momentum=0.7)[0],
              dict(loss='ghm_r', weighted=True))]
    def forced(route, call, x):
        with mock.patch.object(losses, 'choose_route', lambda *a, **k: route):
            return call(x)

    timed = []
    for loss, routes, pred, call, kwargs in tasks:
        reference = routes.index(choose_route(pred.device, **kwargs))
        timings = time_calls([partial(forced, route, call) for route in routes], pred, warmup=args.warmup,
                             repeats=args.repeats)
        timed += [(loss, route, call, pred, timings.median(i), timings.median_ratio(i, reference))
                  for i, route in enumerate(routes)]
    pin_glibc_malloc()  # memory last, as in bench()
    rows = [(loss, route.name, median, ratio, peak_extra_bytes(partial(forced, route, call), pred))
            for loss, route, call, pred, median, ratio in timed]
    return rows, logits.numel() * logits.element_size(), None


def report_routes(device, rows, logits_bytes, args):
    print(f'\n### Routes, {device_name(device)}\n')
    print(f'{args.anchors} anchors x {args.classes} classes, forward + backward, median of {args.repeats} after '
          f'{args.warmup} warm-up; GHM-R on every anchor\'s deltas, weight 1 on the positives only.\n')
    print('| loss | route | median ms | time / route chosen here | peak extra / logits |')
    print('|---|---|---:|---:|---:|')
    for loss, route, seconds, ratio, extra in rows:
        print(f'| {loss} | {route} | {seconds * 1e3:.1f} | {ratio:.2f} | {extra / logits_bytes:.2f} |')


def main(argv=None):
    parser = argparse.ArgumentParser(prog='bench_losses.py', description=__doc__.splitlines()[0])
    parser.add_argument('--anchors', type=int, default=401400)
    parser.add_argument('--classes', type=int, default=80)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows')
    parser.add_argument('--device', choices=['cpu', 'cuda', 'all'], default='all')
    parser.add_argument('--routes', action='store_true',
                        help="instead, time each of the core's eager routes on the same inputs")
    args = parser.parse_args(argv)
    devices = ['cpu', 'cuda'] if args.device == 'all' else [args.device]
    for device in devices:
        if device == 'cuda' and not torch.cuda.is_available():
            print('\n(no CUDA device: GPU figures not measured)')
            continue
        if args.routes:
            rows, logits_bytes, _ = bench_routes(device, args)
            report_routes(device, rows, logits_bytes, args)
            continue
        rows, logits_bytes, num_pos = bench(device, args)
        if device == 'cuda':
            rows.append(('cls', 'mmcv sigmoid_focal_loss (CUDA op)', cuda_focal_row(args), None, 0))
        report(device, rows, logits_bytes, num_pos, args)
        if device == 'cuda':
            check_sync_free()


if __name__ == '__main__':
    main()
