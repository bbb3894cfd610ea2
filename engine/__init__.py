"""NumPy trainer for fully connected networks: layers, initialisers, losses, optimisers, data."""
