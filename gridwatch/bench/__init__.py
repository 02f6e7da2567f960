"""The benchmarks behind `gridwatch bench`: each module measures one part and prints its
figures as JSON (docs/benchmarks.md records them with their commands). `ingest` also holds the
fleet benchmark and the helpers the others share (a stack's fleet, metrics scraping);
`loadgen` makes the synthetic message load."""
