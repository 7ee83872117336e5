"""Training runs: typed config checks, run folders, resume, callbacks and media logging."""
