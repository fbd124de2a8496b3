"""Metrics shared by several later layers (report, annotate, learned, benchjudges): agreement of judges with
human labels (``agreement``) and binary detection scores (``binary``). Pure functions over labels and scores;
they import nothing of negclean but ``errors``, so any layer may use them."""
