"""The README's commands are the ones CI runs, and its framework-free example runs as written."""
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()


def fenced_blocks(language):
    return re.findall(rf'```{language}\n(.*?)```', README, flags=re.S)


def test_ci_runs_the_readme_setup_and_test_commands_at_both_corners():
    ci_commands = [line[len('time '):] for line in (ROOT / '.ci' / 'run').read_text().splitlines()
                   if line.startswith('time ')]
    shell = '\n'.join(fenced_blocks('bash'))
    assert ci_commands == ['bash tools/setup_env.sh', '.venv/bin/ruff check ghm_mmdet tools tests benchmarks',
                           '.venv/bin/python -m pytest',
                           'STACK=oldest bash tools/setup_env.sh', '.venv-oldest/bin/python -m pytest -m compat']
    for command in ci_commands:
        assert command in shell, command


def test_framework_free_example_runs_and_matches_the_modules():
    """The plain-PyTorch example: one call per loss, equal to GHMC/GHMR call after call."""
    example = next(block for block in fenced_blocks('python') if 'ghm_mmdet.core' in block)
    assert 'mmdet' not in example.replace('ghm_mmdet', '')
    namespace = {}
    exec(compile(example, 'README example', 'exec'), namespace)
    from ghm_mmdet.models.losses import GHMC, GHMR
    ghm_c, ghm_r = GHMC(bins=30, momentum=0.75), GHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        logits = torch.randn(64, 5, generator=gen) * 3
        labels = torch.randint(0, 6, (64,), generator=gen)
        valid = torch.rand(64, generator=gen) > 0.1
        deltas, target_deltas = torch.randn(20, 4, generator=gen), torch.randn(20, 4, generator=gen)
        box_weights = (torch.rand(20, 4, generator=gen) > 0.5).float()
        loss_cls, loss_box = namespace['ghm_losses'](logits, labels, valid, deltas, target_deltas,
                                                     box_weights)
        assert torch.allclose(loss_cls, ghm_c(logits, labels, valid.float()), rtol=1e-5)
        assert torch.allclose(loss_box, ghm_r(deltas, target_deltas, box_weights), rtol=1e-5)
