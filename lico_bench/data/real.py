"""Real datasets: registered by the loaders module (CIFAR, SVHN, ImageFolder, VOC)."""
