"""Learned compression: feature codecs (entropy models, with or without attention) at a cut, and
the image codec in front of a whole model, trained and swept over λ by ``splitbench rd``.

Nothing is imported here: ``splitbench.compression.curves`` and ``.bd`` read result tables
without torch, and the training modules load only where a command needs them.
"""
