"""``synesthete-index eval`` by phase (the command itself is :mod:`index_builder.evaluate`).

- :mod:`.data`: queries, catalogue tracks, the embedding configurations;
- :mod:`.catalogue`: the catalogue pass (backbone features, MFCC statistics, fingerprints)
  and the vectors made from it;
- :mod:`.vote`: exact segment search and the service's identification rule on it;
- :mod:`.run`: every query through every configuration (and through the real service);
- :mod:`.metrics`, :mod:`.baseline`: the figures and the MFCC reference they are compared with;
- :mod:`.figures`: the report (one dict, also the JSON).

The configuration names below are the rows of the report.
"""

DEFAULT_CONFIGS = ("fingerprint", "musicnn", "musicnn-trained", "logmel", "combined", "combined-trained")
BASELINE = "mfcc-baseline"
PRETRAINED = "musicnn-pretrained-mean"  # musicnn mean_pool averaged over a track, no head
SIMILARITY = "similarity-model"  # engine.similarity fitted on the catalogue, as a build does
#: combined configuration -> the embedding configuration whose vote it uses
COMBINED = (("combined", "musicnn"), ("combined-trained", "musicnn-trained"))
