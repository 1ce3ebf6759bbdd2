"""Files and splits, decoding, the crop to the body and the cache, transforms, loaders,
PneumoniaMNIST."""
