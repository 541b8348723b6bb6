import pytest
from mmengine.runner.checkpoint import CheckpointLoader


@pytest.fixture(autouse=True)
def schemes(monkeypatch):
    """mmengine's scheme loaders as they were, restored after each test (use_weights_only_loaders wraps them
    for the rest of the process, as a tool wants)."""
    monkeypatch.setattr(CheckpointLoader, '_schemes', type(CheckpointLoader._schemes)(CheckpointLoader._schemes))
    return dict(CheckpointLoader._schemes)
