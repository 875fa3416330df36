"""Development tooling, not domain code: a private PostgreSQL (localpg), the local stack's processes (stack,
runtime), a mail catcher, and the demo data (demo_seed). Used by the CLI's demo and dev commands, the tests and
the benchmarks; the domain core, the receiver and the Dagster definitions never import it (import contracts)."""
