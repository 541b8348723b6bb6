from .ghm_retina_head import GHMRetinaHead, WholeBatchLossMixin

__all__ = ['GHMRetinaHead', 'WholeBatchLossMixin']
