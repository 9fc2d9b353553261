"""Development tooling: the local stack launcher, the demo and its synthetic traffic.

Nothing in production imports this package; the CLI imports it lazily inside `secops stack` and
`secops demo` (tests/unit/test_architecture.py checks both).
"""
