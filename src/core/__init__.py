"""The core: the one network representation, boxes, affine maps, pattern keys, comparison, errors."""
