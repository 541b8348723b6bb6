"""MMEngine glue: ``GHMStatsHook`` (registered in ``mmdet.registry.HOOKS``) records the gradient density
of the GHM losses during training and warns before GHM diverges."""
from .hooks import GHMSnapshot, GHMStatsHook, find_ghm_losses, read_snapshot

__all__ = ['GHMSnapshot', 'GHMStatsHook', 'find_ghm_losses', 'read_snapshot']
