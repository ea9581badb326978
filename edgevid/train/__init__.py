"""edgevid.train: datasets, model variants, fine-tuning, pruning and evaluation.

The data modules (``folders``, ``synth``) need only numpy and OpenCV; everything that
touches a model needs the ``train`` extra (torch + transformers). Nothing is imported
eagerly here, so ``edgevid data ...`` works on a runtime-only install.
"""
