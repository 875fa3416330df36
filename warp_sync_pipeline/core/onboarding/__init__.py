"""Day one: matching an existing portal's companies to WARP's customers (plain Python and pandas)."""
