"""Strava: the API client and its rate-limit budget, the records syncsim keeps, the ``strava_sync`` job, and
(in :mod:`syncsim.strava.fake`) FakeStrava. Import what you need from its module: importing this package loads
nothing else."""
