"""The sync-state tests use `rules` and `make_customer` from tests/plugins/customers.py."""
