"""What RTMDetHead divides its classification loss by: S, the sum of its assignment metrics per step, over a
few training batches of a config, untrained or from a checkpoint; and N, the valid classification entries
per batch, which GHM-C's ``reduction='mean'`` divides by (so ``'sum'`` is ``N / S`` times Eq. 8's scale).

    python benchmarks/rtmdet_scale.py configs/rtmdet-tiny_ghm_demo.py
    python benchmarks/rtmdet_scale.py configs/rtmdet-tiny_ghm_demo.py --checkpoint work_dirs/.../iter_1500.pth
"""
import argparse
import importlib
import json
import statistics
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root

from benchmarks.ghm_diagnosis import build_model  # noqa: E402


def measure(config, checkpoint: Optional[str] = None, batches: int = 4) -> dict:
    """Per batch: S (the head's ``cls_avg_factor`` summed over levels) and N (valid entries, rows x classes).
    ``config``: a path or an mmengine ``Config``."""
    import torch
    from mmdet.models.dense_heads import rtmdet_head
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    cfg = Config.fromfile(config) if isinstance(config, (str, Path)) else config
    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    init_default_scope('mmdet')
    torch.manual_seed(0)  # the untrained weights
    model = build_model(cfg, checkpoint)  # initialised as a training starts, or the checkpoint's
    loader = Runner.build_dataloader(dict(cfg.train_dataloader, num_workers=0, persistent_workers=False), seed=0)

    sums, entries = [], []
    original = rtmdet_head.RTMDetHead.loss_by_feat_single

    def recording(self, cls_score, bbox_pred, labels, label_weights, *args, **kwargs):
        out = original(self, cls_score, bbox_pred, labels, label_weights, *args, **kwargs)
        sums[-1] += float(out[2])
        entries[-1] += int((label_weights.reshape(-1) > 0).sum()) * self.cls_out_channels
        return out

    rtmdet_head.RTMDetHead.loss_by_feat_single = recording
    try:
        model.train()
        with torch.no_grad():
            for index, data in enumerate(loader):
                if index == batches:
                    break
                sums.append(0.0)
                entries.append(0)
                data = model.data_preprocessor(data, training=True)
                model.loss(data['inputs'], data['data_samples'])
    finally:
        rtmdet_head.RTMDetHead.loss_by_feat_single = original
    name = str(config) if isinstance(config, (str, Path)) else cfg.filename
    return dict(config=name, checkpoint=checkpoint, S=sums, N=entries, median_S=statistics.median(sums),
                median_N=statistics.median(entries))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog='rtmdet_scale.py', description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='weights to load (default: untrained)')
    parser.add_argument('--batches', type=int, default=4)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.config, args.checkpoint, args.batches), indent=1))


if __name__ == '__main__':
    main()
