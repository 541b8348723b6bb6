"""What differs between the supported torch versions, decided once at import.

* ``is_compiling()``: whether ``torch.compile`` (Dynamo) is tracing the caller. torch >= 2.3 asks it as
  ``torch.compiler.is_compiling``; older torch has only ``torch._dynamo.is_compiling``, which Dynamo also
  traces as ``True``.
* :func:`assert_async`: a device-side assertion; its message argument is new in torch 2.1.
* :func:`check_traced_route`: the traced (``torch.compile``) route needs torch >= 2.1; torch 2.0's Inductor
  compiles it to wrong numbers, so on 2.0 a compiled GHM loss stops with an error that says so.
"""
import torch

try:
    from torch.compiler import is_compiling
except ImportError:  # torch < 2.3
    from torch._dynamo import is_compiling

def _assert_async_takes_a_message() -> bool:
    try:
        torch._assert_async(torch.tensor(True), 'probe')
    except TypeError:  # torch 2.0: _assert_async(tensor) only
        return False
    return True


if _assert_async_takes_a_message():
    def assert_async(condition: torch.Tensor, message: str) -> None:
        """Assert ``condition`` on its device without a host sync; ``message`` if it fails."""
        torch._assert_async(condition, message)
else:
    def assert_async(condition: torch.Tensor, message: str) -> None:
        """Assert ``condition`` on its device without a host sync (this torch drops the ``message``)."""
        torch._assert_async(condition)


TORCH_VERSION = tuple(int(part) for part in torch.__version__.split('+')[0].split('.')[:2])
#: The oldest torch whose Inductor compiles the traced GHM form to the eager numbers (tested).
TRACED_ROUTE_MIN_TORCH = (2, 1)


def check_traced_route() -> None:
    """Raise, while tracing, if this torch compiles the GHM losses wrongly (a graph break with this message,
    or Dynamo's ``Unsupported`` at this line with ``fullgraph=True``)."""
    if TORCH_VERSION < TRACED_ROUTE_MIN_TORCH:
        raise RuntimeError('torch.compile of the ghm_mmdet losses needs torch >= 2.1: torch 2.0 compiles them '
                           'to wrong values; call them eagerly, or upgrade torch')


__all__ = ['is_compiling', 'assert_async', 'check_traced_route', 'TORCH_VERSION', 'TRACED_ROUTE_MIN_TORCH']
