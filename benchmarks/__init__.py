"""Benchmarks: netcli's training path side by side with PyTorch CPU.

    python -m benchmarks [--quick] [--workloads W1,W3] [--threads 1,2] [--repeats 5]

Never collected by pytest (testpaths is tests/); never fails on timing.
See benchmarks/runner.py for what is measured and how, and RESULTS.md for the numbers.
"""
