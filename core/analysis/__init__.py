"""Analysis: metrics, evaluation, failure analysis, search, plots and reports over an index."""
