"""Forward + backward time and peak extra memory of GHM-C / GHM-R at RetinaNet scale.

Input: two 800x1333 images -> 401,400 anchors x 80 classes, about 1% positive and 5% ignored anchors,
labels given as integers (as RetinaHead passes them); GHM-R on the positive anchors' 4-d deltas.
Every variant runs in this one process on the same tensors, with warm-up and the median of repeats, so
the ratios compare like with like on whatever machine runs it.

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
import statistics
import time
from functools import partial

import torch
from mmdet.models.losses import FocalLoss, L1Loss, SmoothL1Loss
from mmdet.models.losses import ghm_loss as mmdet_ghm

import ghm_mmdet  # noqa: F401
from ghm_mmdet.models.losses import GHMC, GHMR


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
    """Median seconds of each call; the calls take turns in every repeat, so a change in background
    load between repeats hits all of them alike and the ratios stay fair."""
    sync = torch.cuda.synchronize if pred.is_cuda else (lambda: None)
    for call in calls:
        for _ in range(warmup):
            run_once(call, pred, *args)
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, samples in zip(calls, times):
            sync()
            start = time.perf_counter()
            run_once(call, pred, *args)
            sync()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


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
        seconds = time_calls(calls, pred, *targets, warmup=args.warmup, repeats=repeats)
        timed += [(task, name, call, median, pred, targets)
                  for (name, _), call, median in zip(variants, calls, seconds)]
    # Memory last: pinning malloc would slow allocation-heavy variants and skew the timings above.
    pin_glibc_malloc()
    rows = [(task, name, median, peak_extra_bytes(call, pred, *targets))
            for task, name, call, median, pred, targets in timed]
    return rows, logits_bytes, num_pos


def report(device, rows, logits_bytes, num_pos, args):
    anchors = dict(cls='mmdet GHMC (built-in)', reg='mmdet GHMR (built-in)')
    focal = next(seconds for task, name, seconds, _ in rows if name == 'mmdet FocalLoss')
    print(f'\n### {device_name(device)}\n')
    print(f'{args.anchors} anchors x {args.classes} classes ({num_pos} positive), forward + backward, '
          f'median of {args.repeats} (regression: {args.repeats * 4}) after {args.warmup} warm-up.\n')
    print('| loss | median ms | speed-up vs mmdet built-in | time / FocalLoss | peak extra MiB | '
          'peak extra / logits |')
    print('|---|---:|---:|---:|---:|---:|')
    for task, name, seconds, extra in rows:
        anchor = next(s for t, n, s, _ in rows if t == task and n == anchors[task])
        vs_focal = f'{seconds / focal:.2f}' if task == 'cls' else ''
        ratio = f'{extra / logits_bytes:.2f}' if task == 'cls' else ''
        print(f'| {name} | {seconds * 1e3:.1f} | {anchor / seconds:.1f}x | {vs_focal} | '
              f'{extra / 2**20:.1f} | {ratio} |')


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
                      warmup=args.warmup, repeats=args.repeats)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--anchors', type=int, default=401400)
    parser.add_argument('--classes', type=int, default=80)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows')
    parser.add_argument('--device', choices=['cpu', 'cuda', 'all'], default='all')
    args = parser.parse_args()
    devices = ['cpu', 'cuda'] if args.device == 'all' else [args.device]
    for device in devices:
        if device == 'cuda' and not torch.cuda.is_available():
            print('\n(no CUDA device: GPU figures not measured)')
            continue
        rows, logits_bytes, num_pos = bench(device, args)
        if device == 'cuda':
            rows.append(('cls', 'mmcv sigmoid_focal_loss (CUDA op)', cuda_focal_row(args), 0))
        report(device, rows, logits_bytes, num_pos, args)
        if device == 'cuda':
            check_sync_free()


if __name__ == '__main__':
    main()
