"""Command-line tools that ship with the package, each run as ``python -m focal_plugins.tools.NAME``:

``ghmr_mu``
    the scale of an mmdet dense head's box-regression targets (or a model's residuals) and
    the GHM-R ``mu`` that fits it;
``plot_ghm_stats``
    draws the GHM bins that ``GHMStatsHook`` logged while training (mmdet or detectron2);
``plot_focal``
    the focal loss paper's Figure 1 (loss against p_t for several gamma);
``plot_grad_density``
    the GHM paper's gradient-norm density from trained mmdet checkpoints.

``python -m focal_plugins.tools.NAME --help`` prints each one's options. The shipped configs are
listed by ``python -m focal_plugins.configs``; ``ghmr_mu`` and ``plot_grad_density`` take
either a config path or such a name (``demo/retinanet_r18_synthetic_ghm.py``).
The tools need matplotlib (``plot_*``) and mmdet (``ghmr_mu``, ``plot_grad_density``).
"""

TOOLS = ("ghmr_mu", "plot_ghm_stats", "plot_focal", "plot_grad_density")
