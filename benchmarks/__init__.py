"""The project's benchmarks, one module per question (benchmarks.common says which)."""
