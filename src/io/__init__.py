"""Files: the run directory, every file format with its reader and writer, atomic writes, MNIST."""
