"""Counting linear regions: the problem contract, backends, the tree walk, bounds, the file driver."""
