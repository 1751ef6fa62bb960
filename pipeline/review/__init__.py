"""The judges' review of a run: workbooks out, decisions in, consensus, final codebook.

Layout inside a run folder (the run's own outputs are never touched)::

    RUN/review/decisions.sqlite      every position, consensus decision and audit comment
    RUN/review/workbook.key          the secret that signs whose a workbook is (owner-only;
                                     never handed out: :mod:`.signing`)
    RUN/review/round-<n>/<judge>.xlsx  one workbook per judge (and the auditor)
    RUN/review/round-<n>/packet.html   the same content, read-only, self-contained
    RUN/review/codebook.yaml|.md     the final codebook (``consensa review apply``)
    RUN/review/cqr_table.md|.csv     the CQR table recomputed from the consensus

Modules: :mod:`.model` (items and decisions, validation), :mod:`.store` (SQLite),
:mod:`.workbook` (export/import), :mod:`.signing` (workbook identity),
:mod:`.agreement` (status, kappa),
:mod:`.apply` (final codebook), :mod:`.html` (packet), :mod:`.precode`.
"""
