from .ghm_stats_hook import GHMSnapshot, GHMStatsHook, find_ghm_losses, read_snapshot

__all__ = ['GHMSnapshot', 'GHMStatsHook', 'find_ghm_losses', 'read_snapshot']
