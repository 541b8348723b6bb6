"""ghm_mmdet.core.compat: one answer to "is torch.compile tracing?" on every supported torch, and source that
Python 3.8 parses."""
import ast
from pathlib import Path

import pytest
import torch

from ghm_mmdet.core import compat

pytestmark = pytest.mark.compat
ROOT = Path(__file__).resolve().parents[2]


def test_is_compiling_is_false_in_eager_and_true_while_traced():
    def probe(x):
        return x + 1 if compat.is_compiling() else x - 1

    assert probe(torch.zeros(1)).item() == -1
    torch._dynamo.reset()
    assert torch.compile(probe, backend='eager', fullgraph=True)(torch.zeros(1)).item() == 1


def test_only_the_compat_module_asks_torch_which_api_it_has():
    for path in (ROOT / 'ghm_mmdet').rglob('*.py'):
        if path.name != 'compat.py':
            source = path.read_text()
            assert 'torch.compiler' not in source and 'torch._dynamo' not in source, path


@pytest.mark.parametrize('folder', ['ghm_mmdet', 'tools', 'benchmarks', 'tests'])
def test_source_parses_as_python_3_8(folder):
    for path in (ROOT / folder).rglob('*.py'):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))
