"""Why GHM trains in one head and not in another: ``GHMStatsHook``'s statistics of every GHM loss and the
gradient norm of each loss term, over a few training batches of finished ``evidence.py`` runs, at their start
(untrained weights initialised as mmengine's Runner does, the run's seed) and at their end (the run's last checkpoint).

    python benchmarks/ghm_diagnosis.py work_dirs/evidence/heads/fcos_ghmc/seed0 \\
        work_dirs/evidence/heads/fcos_focal/seed0 --out docs/results/heads/diagnosis.json

A run directory is one of ``evidence.py``'s (``OUT_DIR/STUDY/SETTING/seedN``): its config is the sibling
``seedN.py`` and its weights the ``last_checkpoint`` it names. Per batch, for every ``loss*`` term of the
head (as mmengine's ``parse_losses`` sums them): its value and the norm of its gradient over all
parameters, the norm of the summed loss's gradient (what ``clip_grad`` clips) and, per GHM loss, the
statistics ``GHMStatsHook`` logs (``num_valid``, ``non_empty_regions``, ``largest_region_share``,
``max_beta``, ``loss``, ``easy_loss_share``, ``outlier_loss_share``: of the loss's last call in the
batch, as the hook reports) and the hook's warning conditions (a non-finite loss or density; one region
with at least ``collapse_share`` of the entries). The tables give medians over the batches. Nothing is
trained: the weights are those of the state, and GHM's moving average moves only as in training.
"""
import argparse
import importlib
import json
import math
import statistics
import sys
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path: the checkout's root

from benchmarks.timing import machine_description  # noqa: E402

#: ``GHMStatsHook``'s default: a region holding this share of the entries counts as collapsed.
COLLAPSE_SHARE = 0.99


def loss_terms(losses: Dict[str, object]) -> Dict[str, object]:
    """The terms mmengine's ``BaseModel.parse_losses`` sums: every key containing ``'loss'``, a list summed."""
    terms = {}
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        terms[name] = sum(value) if isinstance(value, (list, tuple)) else value
    if not terms:
        raise ValueError(f'no loss term among the keys {sorted(losses)}')
    return terms


def term_gradient_norms(terms: Dict[str, object], parameters: Sequence) -> Dict[str, float]:
    """The 2-norm of each term's gradient over ``parameters``, and ``'total'``: that of their sum."""
    import torch
    parameters = [p for p in parameters if p.requires_grad]
    norms = {}
    total = None
    for name, value in terms.items():
        grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
        flat = [g.reshape(-1) for g in grads if g is not None]
        norms[name] = float(torch.cat(flat).norm()) if flat else 0.0
        total = value if total is None else total + value
    grads = torch.autograd.grad(total, parameters, allow_unused=True)
    flat = [g.reshape(-1) for g in grads if g is not None]
    norms['total'] = float(torch.cat(flat).norm()) if flat else 0.0
    return norms


def ghm_warnings(scalars: Dict[str, float], density: Sequence[float], collapse_share: float) -> List[str]:
    """The conditions ``GHMStatsHook`` warns about that one snapshot shows (collapse is counted per record;
    the hook needs ``collapse_intervals`` records in a row)."""
    warnings = []
    if not math.isfinite(scalars['loss']) or not all(map(math.isfinite, density)):
        warnings.append('non-finite')
    if scalars['largest_region_share'] >= collapse_share:
        warnings.append('collapse')
    return warnings


def run_files(run_dir: Path):
    """``(config, checkpoint)`` of an ``evidence.py`` run directory."""
    config = run_dir.with_suffix('.py')
    pointer = run_dir / 'last_checkpoint'
    if not config.is_file():
        raise FileNotFoundError(f'run_dir {str(run_dir)!r}: no config {config} beside it (an evidence.py run '
                                'directory, OUT_DIR/STUDY/SETTING/seedN, is expected)')
    if not pointer.is_file():
        raise FileNotFoundError(f'run_dir {str(run_dir)!r}: no last_checkpoint file; the run has not saved '
                                'a checkpoint yet')
    checkpoint = Path(pointer.read_text().strip())
    if not checkpoint.is_absolute():
        checkpoint = run_dir / checkpoint
    if not checkpoint.is_file():
        checkpoint = run_dir / checkpoint.name  # the run directory was moved since
    return config, checkpoint


def build_model(cfg, checkpoint: Optional[Path] = None):
    """``cfg.model`` with ``checkpoint``'s weights or, without one, initialised as mmengine's Runner does
    before a training (``init_weights``: the heads' prior bias and initialisers), from the current RNG."""
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    if checkpoint is None:
        model.init_weights()
    else:
        from ghm_mmdet.apis.checkpoint import load_checkpoint_safely
        model.load_state_dict(load_checkpoint_safely(str(checkpoint))['state_dict'])
    return model


def diagnose_state(cfg, checkpoint: Optional[Path], seed: int, batches: int,
                   collapse_share: float = COLLAPSE_SHARE) -> dict:
    """One state of a model (untrained with ``checkpoint=None``): per batch, the loss terms, their gradient
    norms and the GHM statistics; and their medians."""
    from mmengine.runner import Runner, set_random_seed

    from ghm_mmdet.engine.hooks.ghm_stats_hook import find_ghm_losses, read_snapshot, stats_tag

    set_random_seed(seed)  # the weights, and the pipeline's random flips (numpy): the same batches per state
    model = build_model(cfg, checkpoint)
    model.train()
    loader = Runner.build_dataloader(dict(cfg.train_dataloader, num_workers=0, persistent_workers=False),
                                     seed=seed)
    ghm_losses = [(stats_tag(path, module), module) for path, module in find_ghm_losses(model)]
    records = []
    for index, data in enumerate(loader):
        if index == batches:
            break
        for _, module in ghm_losses:
            module.record_loss_shares, module.last_stats = True, None
        data = model.data_preprocessor(data, training=True)
        terms = loss_terms(model.loss(data['inputs'], data['data_samples']))
        norms = term_gradient_norms(terms, list(model.parameters()))
        record = dict(loss={name: float(value.detach()) for name, value in terms.items()}, grad_norm=norms,
                      ghm={})
        for tag, module in ghm_losses:
            module.record_loss_shares = False
            snapshot = read_snapshot(module)
            if snapshot is not None:
                scalars = snapshot.scalars()
                record['ghm'][tag] = dict(scalars, counts=list(snapshot.counts),
                                          warnings=ghm_warnings(scalars, snapshot.density, collapse_share))
        records.append(record)
    if not records:
        raise ValueError(f'the train dataloader gave no batch (batches={batches})')
    return dict(checkpoint=None if checkpoint is None else str(checkpoint), batches=records,
                median=median_record(records))


def median_record(records: List[dict]) -> dict:
    """Medians over the batches of every number; ``warnings``: each condition with the share of batches."""
    def median_of(key_path):
        values = []
        for record in records:
            value = record
            for key in key_path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                values.append(value)
        return statistics.median(values) if values else None

    first = records[0]
    median = dict(loss={name: median_of(('loss', name)) for name in first['loss']},
                  grad_norm={name: median_of(('grad_norm', name)) for name in first['grad_norm']}, ghm={})
    tags = sorted({tag for record in records for tag in record['ghm']})
    for tag in tags:
        seen = [record['ghm'][tag] for record in records if tag in record['ghm']]
        names = [name for name, value in seen[0].items() if isinstance(value, (int, float))]
        entry = {name: median_of(('ghm', tag, name)) for name in names}
        entry['warnings'] = {condition: sum(condition in s['warnings'] for s in seen) / len(seen)
                             for condition in sorted({c for s in seen for c in s['warnings']})}
        median['ghm'][tag] = entry
    return median


def diagnose_run(run_dir: Path, batches: int) -> dict:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    config, checkpoint = run_files(run_dir)
    cfg = Config.fromfile(str(config))
    seed = cfg.get('randomness', {}).get('seed') or 0  # the run's own
    for module in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(module)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    clip = (cfg.get('optim_wrapper', {}).get('clip_grad') or {}).get('max_norm')
    return dict(run_dir=str(run_dir), setting=run_dir.parent.name, seed=seed, config=str(config), clip_max_norm=clip,
                states=dict(start=diagnose_state(cfg, None, seed, batches),
                            end=diagnose_state(cfg, checkpoint, seed, batches)))


def _fmt(value, digits=3):
    if value is None:
        return ''
    return f'{value:.{digits}g}' if abs(value) < 1e4 else f'{value:.3e}'


def markdown(result: dict) -> str:
    """Two tables: the loss terms and their gradient norms; the GHM statistics."""
    lines = ['| run | state | loss terms (value / gradient norm) | total gradient norm (clip) |',
             '|---|---|---|---:|']
    for run in result['runs']:
        for state, data in run['states'].items():
            med = data['median']
            terms = '; '.join(f'{name} {_fmt(med["loss"][name])} / {_fmt(med["grad_norm"][name])}'
                              for name in med['loss'])
            lines.append(f'| `{run["setting"]}` seed {run["seed"]} | {state} | {terms} | '
                         f'{_fmt(med["grad_norm"]["total"])} ({_fmt(run["clip_max_norm"])}) |')
    lines += ['', '| run | state | GHM loss | N | non-empty regions | largest region share | max beta | '
              'easy / outlier loss share | warnings (share of batches) |',
              '|---|---|---|---:|---:|---:|---:|---|---|']
    for run in result['runs']:
        for state, data in run['states'].items():
            for tag, entry in data['median']['ghm'].items():
                warnings = ', '.join(f'{c} {s:.0%}' for c, s in entry['warnings'].items()) or 'none'
                shares = (f'{_fmt(entry.get("easy_loss_share"))} / {_fmt(entry.get("outlier_loss_share"))}'
                          if 'easy_loss_share' in entry else '')
                lines.append(f'| `{run["setting"]}` seed {run["seed"]} | {state} | {tag} | '
                             f'{_fmt(entry["num_valid"], 6)} | {_fmt(entry["non_empty_regions"])} | '
                             f'{_fmt(entry["largest_region_share"])} | {_fmt(entry["max_beta"])} | {shares} | '
                             f'{warnings} |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(prog='ghm_diagnosis.py', description=__doc__.splitlines()[0])
    parser.add_argument('run_dirs', nargs='+', type=Path,
                        help='evidence.py run directories (OUT_DIR/STUDY/SETTING/seedN)')
    parser.add_argument('--batches', type=int, default=4, help='training batches per state (default 4)')
    parser.add_argument('--out', type=Path, help='write the JSON here, and the tables beside it (.md)')
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error(f'--batches must be >= 1, got {args.batches}')
    command = ['python', 'benchmarks/ghm_diagnosis.py', *map(str, args.run_dirs), '--batches', str(args.batches)]
    result = dict(command=command, date=datetime.now().strftime('%Y-%m-%d'), machine=machine_description(),
                  runs=[diagnose_run(run_dir, args.batches) for run_dir in args.run_dirs])
    table = markdown(result)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + '\n')
        args.out.with_suffix('.md').write_text(table)
    return result


if __name__ == '__main__':
    main()
