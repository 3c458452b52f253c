"""Test session wiring. Server fixtures live in tests/fixtures/ (one module per server)."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.brokers",
]
