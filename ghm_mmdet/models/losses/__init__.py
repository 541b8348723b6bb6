from .ghm_loss import GHMC, GHMR

__all__ = ['GHMC', 'GHMR']
