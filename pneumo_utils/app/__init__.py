"""What a user runs: the command line, the run pipeline (train), the results command, predict,
export, bench, download, reproduce, the notebooks' settings and headless runs."""
