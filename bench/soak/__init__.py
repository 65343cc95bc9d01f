"""`make soak`: the pipeline under load and faults, with nothing lost (see `__main__`)."""
