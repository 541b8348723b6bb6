"""Analysis of the GHM losses' gradient density outside training (``tools/analysis_tools/``).

Needs matplotlib (the ``tools`` extra): ``pip install -e '.[tools]'``.
"""
from .figures import plot_gradient_density
from .gradient_density import plot_gradient_density_of_config
from .gradient_statistics import (
                                  FINE_BINS,
                                  GradientNormHistogram,
                                  build_model,
                                  collect_gradient_statistics,
                                  describe_source,
                                  record_gradient_norms,
)

__all__ = ['FINE_BINS', 'GradientNormHistogram', 'build_model', 'collect_gradient_statistics',
           'describe_source', 'plot_gradient_density', 'plot_gradient_density_of_config',
           'record_gradient_norms']
