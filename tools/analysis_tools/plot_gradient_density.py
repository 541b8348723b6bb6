"""Plot the gradient-norm density of a detector's GHM losses, as Fig. 1-3 of arXiv:1811.05181.

    python tools/analysis_tools/plot_gradient_density.py CONFIG --out-dir DIR [--checkpoint CKPT]
                                                          [--num-batches N] [--cfg-options K=V ...]

The logic is in :mod:`ghm_mmdet.analysis`.
"""
import argparse
import os

from mmengine.config import DictAction

from ghm_mmdet.apis import one_line_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='plot_gradient_density.py',
        description='Plot the gradient-norm density of the GHM losses over a few training batches, at '
                    'initialisation or from a checkpoint, as PNG figures')
    parser.add_argument('config', help='config file whose model uses GHMC/GHMR')
    parser.add_argument('--checkpoint', help='checkpoint to load (weights only); default: initialisation')
    parser.add_argument('--out-dir', required=True, help='directory for the PNG figures')
    parser.add_argument('--num-batches', type=int, default=4, help='training batches to run (default 4)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value as for tools/train.py')
    args = parser.parse_args(argv)
    if args.num_batches < 1:
        parser.error(f'--num-batches must be >= 1, got {args.num_batches}')
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        parser.error(f'--checkpoint {args.checkpoint} does not exist (a local checkpoint file)')
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    with one_line_errors('plot_gradient_density.py'):
        from ghm_mmdet.analysis import plot_gradient_density_of_config
        written = plot_gradient_density_of_config(args.config, args.out_dir, args.checkpoint,
                                                  args.num_batches, args.cfg_options)
    for path in written:
        print(path)


if __name__ == '__main__':
    main()
