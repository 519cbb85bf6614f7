"""Part B: UNets trained from scratch on MNIST (data, models, training, sampling, FID-lite)."""
