"""One codec per training-data format (row <-> Instance) and the containers they are stored in.

Codecs: ``tevatron`` (also RLHN, and the ``parquet`` format's columns), ``flagembedding``, ``st``. Each has
``matches(keys)``, ``parse(row, line=)`` and ``to_rows(instance)``; its docstring says what the format keeps and
what it cannot hold. Containers: ``_jsonl`` (plain or gzip) and ``_parquet``. Use them through
``negclean.data.io``.
"""
