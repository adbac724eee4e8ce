"""Development services: private Mosquitto, PostgreSQL and TimescaleDB instances for the demo,
the tests and the benchmarks, started from this source checkout on free loopback ports.

Why a package of its own: this is tooling, not the runtime. ``muckwatch run`` and everything
it uses talk to whatever broker and database the configuration names; only the demo and the
``muckwatch services`` command start these. Nothing below ``muckwatch`` imports it.
"""
