"""Training: the engine (fit / evaluate / predict) and the run-folder contract."""
