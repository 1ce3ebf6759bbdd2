"""Files and splits, decoding, the crop to the body and the cache, the splits held on the training
device and augmented there in batches, the image alterations, the stressed validation sets,
loaders for the work after training, outside images (predict, preprocess), PneumoniaMNIST."""
