"""Where the code runs: device and precision, torchrun, Ctrl-C, atomic files, the user's errors."""
