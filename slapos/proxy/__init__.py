"""The stand-alone SlapOS master: `slapos proxy start` (see docs/proxy.rst)."""
