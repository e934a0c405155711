"""What a network is fed: the lung field, the harmonised input, lesion maps and crops, augmentation."""
