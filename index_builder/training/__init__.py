"""Fine-tuning the embedding head, by phase (``synesthete-index train`` is :mod:`index_builder.train`).

- :mod:`.data`: which catalogue tracks (with audio) to learn from;
- :mod:`.cache`: backbone features of clean patches and phone-degraded views, cached on disk;
- :mod:`.losses`: InfoNCE, relational distillation, supervised contrastive;
- :mod:`.loop`: the optimisation, and how well a head finds a view's own patch.
"""
