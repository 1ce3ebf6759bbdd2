"""Files and splits, decoding, the crop to the body and the cache, transforms, the stressed
validation sets, loaders, outside images (predict, preprocess), PneumoniaMNIST."""
