"""mmdet's own GHM unit tests, run against the classes its registry builds once ghm_mmdet is imported.

Vendored from open-mmlab/mmdetection 3.x, ``tests/test_models/test_losses/test_loss.py`` (Apache-2.0):
the GHMC/GHMR cases of ``test_loss_with_reduction_override`` and ``test_GHMR_loss``, unchanged apart from
taking the classes from the registry and a comment on what each case checks.
"""
import pytest
import torch
from mmdet.registry import MODELS

import ghm_mmdet  # noqa: F401  (registers ours over mmdet's GHMC/GHMR)
from ghm_mmdet.models.losses import GHMC, GHMR

pytestmark = pytest.mark.compat


def test_the_registry_builds_ours():
    assert MODELS.get('GHMC') is GHMC and MODELS.get('GHMR') is GHMR


@pytest.mark.parametrize('loss_class', [MODELS.get('GHMR'), MODELS.get('GHMC')])
def test_loss_with_reduction_override(loss_class):
    pred = torch.rand((10, 4))
    target = torch.rand((10, 4)),
    weight = None

    with pytest.raises(AssertionError):
        # only reduction_override from [None, 'none', 'mean', 'sum']
        # is not allowed
        reduction_override = True
        loss_class()(
            pred, target, weight, reduction_override=reduction_override)


@pytest.mark.parametrize('loss_class', [MODELS.get('GHMR')])
@pytest.mark.parametrize('input_shape', [(10, 4), (0, 4)])
def test_GHMR_loss(loss_class, input_shape):
    pred = torch.rand(input_shape)
    target = torch.rand(input_shape)
    weight = torch.rand(input_shape)

    # Test loss forward
    loss = loss_class()(pred, target, weight)
    assert isinstance(loss, torch.Tensor)


def test_our_error_for_a_bad_reduction_override_is_also_a_clear_value_error():
    """The AssertionError mmdet's contract asks for is our GHMArgumentError, naming the argument."""
    with pytest.raises(ValueError, match=r"reduction_override must be one of \('none', 'mean', 'sum'\), "
                                         r'got True'):
        GHMC()(torch.rand(10, 4), torch.rand(10, 4), None, reduction_override=True)
