"""A reference Django monolith for copy-on-write benchmarks (see examples/monolith/README.md)."""
