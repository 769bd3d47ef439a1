"""Reports: the results table, the trend verdict and the figures."""
