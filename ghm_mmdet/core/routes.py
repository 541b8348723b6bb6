"""Which computation serves a GHM call: the one place that decides, and why each route exists.

Every route computes the same mathematics (tested route against route and against a dense reference in
``tests/core/test_routes.py``); they differ in speed and memory, so each is kept only where it is measured
to be faster or leaner on a device users train on (docs/design.md gives the measurements).
"""
import enum

from torch import device as Device

from .compat import check_traced_route, is_compiling


class Route(enum.Enum):
    #: ``torch.compile`` is tracing (torch >= 2.1): plain expressions over the fixed edges, which Inductor
    #: fuses into one binning-and-counting pass; static shapes, no data-dependent op.
    TRACED = 'traced'
    #: GHM-C from integer labels, summed, eager, on the CPU: row chunks with a chunk-sized one-hot target
    #: that stay in cache, one byte per entry kept for the backward (faster and leaner than DENSE there).
    LABEL_FUSED = 'label_fused'
    #: GHM-R with weights, summed, eager, on the CPU: only the entries with weight > 0 (RetinaHead: about
    #: 1%); ``nonzero`` would sync an accelerator with the host, so the CPU alone takes it.
    SELECTED = 'selected'
    #: Everything else, and every accelerator: ``bucketize``/``bincount`` over the whole tensor, no host
    #: sync. (CUDA was not measured: the label route launches a few dozen kernels per chunk.)
    DENSE = 'dense'


def choose_route(device: Device, *, labels: bool = False, weighted: bool = False, summed: bool = True,
                 loss: str = 'ghm_c') -> Route:
    """The route for one call of ``loss`` (``'ghm_c'``, ``'ghm_c_softmax'`` or ``'ghm_r'``).

    Args:
        device: the device of the input.
        labels: GHM-C targets are integer class labels.
        weighted: GHM-R has per-entry weights.
        summed: the reduction is ``'sum'`` or ``'mean'`` (not ``'none'``, which needs every entry's loss).
        loss: which loss.
    """
    if is_compiling():
        check_traced_route()
        return Route.TRACED
    if device.type == 'cpu' and summed:
        if loss == 'ghm_c' and labels:
            return Route.LABEL_FUSED
        if loss == 'ghm_r' and weighted:
            return Route.SELECTED
    return Route.DENSE
