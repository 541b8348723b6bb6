"""What ``tools/analysis_tools/plot_gradient_density.py`` runs: collect, then plot."""
from typing import List, Optional

from mmengine.config import Config
from mmengine.logging import MMLogger

from .figures import plot_gradient_density
from .gradient_statistics import collect_gradient_statistics, describe_source


def plot_gradient_density_of_config(config: str, out_dir: str, checkpoint: Optional[str] = None,
                                    num_batches: int = 4, cfg_options: Optional[dict] = None,
                                    log_level: str = 'WARNING') -> List[str]:
    """The figures of :func:`~.figures.plot_gradient_density` for ``config``'s model over ``num_batches``
    training batches, at initialisation or from ``checkpoint``.

    Args:
        config: config file whose model uses GHMC/GHMR.
        out_dir: where the PNG files go (created if missing).
        checkpoint: optional checkpoint, loaded weights-only; None plots the model at initialisation.
        num_batches: training batches to run, int >= 1.
        cfg_options: ``--cfg-options`` to merge into the config.
        log_level: of the mmengine logger made current for the run; by default the per-parameter
            initialisation report and the dataset's messages are not printed.

    Returns:
        The paths of the figures written.

    """
    MMLogger.get_instance('plot_gradient_density', log_level=log_level)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    histograms = collect_gradient_statistics(cfg, checkpoint, num_batches)
    return plot_gradient_density(histograms, out_dir, describe_source(config, checkpoint))
