"""Files and splits, decoding, the crop to the body and the cache, the splits held on the training
device (for training and for every scoring) and augmented there in batches, the image
alterations, the stressed validation sets, outside images (predict, preprocess), PneumoniaMNIST."""
