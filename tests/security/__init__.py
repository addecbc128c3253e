"""Attack tests against the real service: fuzzed requests, crafted uploads, tokens and users."""
