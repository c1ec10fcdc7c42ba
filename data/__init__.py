"""The data layer: finding, validating, de-duplicating and splitting breast ultrasound cases.

Main entry points:

- :func:`data.discover.discover` finds cases in a BUSI-layout folder or a manifest CSV.
- :func:`data.report.analyze_dataset` reads and validates them, finds duplicates and
  makes leak-free folds; :func:`data.report.write_report` saves the results.
- :func:`data.synthetic.ensure_synthetic` provides the built-in synthetic dataset.
"""
