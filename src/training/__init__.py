"""Training the fcnn zoo on MNIST and the regularisation sweep."""
