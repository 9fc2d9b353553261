"""Coverage-guided fuzz harnesses (atheris) for the parsers of network input: one ``fuzz_TARGET`` module each."""
