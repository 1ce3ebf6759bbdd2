"""What a user runs: the command line, predict, export, bench, download, reproduce, the notebooks'
settings."""
