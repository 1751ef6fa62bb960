"""The pipeline's stages, one module each.

From transcripts to proposals, in the order a run calls them: ``ingest`` (files to
speaker turns), ``deidentify``, ``segment`` (turns to meaning units), ``embed``,
``context``, ``reduce``, ``cluster``, ``label``, ``domains``, ``concepts`` and ``cqr``
(frequency labels and the CQR table). ``protocol``, ``naming``, ``coreideas`` and
``llm`` hold the CQR-native proposals: domains from the interview protocol, phrase
names, core ideas per case and domain, and the optional local language model.

A stage takes typed inputs (DataFrames with the schemas in :mod:`pipeline.types`,
arrays) and returns typed outputs; it does not read or write run folders, print, or
know about the other stages. Swappable stages register versioned names in
:mod:`pipeline.registry`.
"""
