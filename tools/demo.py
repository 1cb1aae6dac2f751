"""The `make demo` job: generate data, train, test, print the metrics."""
from flexvit_mm.cli import run
from flexvit_mm.cli.demo import main

if __name__ == '__main__':
    run(main)
