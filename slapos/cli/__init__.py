"""The `slapos` command line: argparse only, import-light at module level.

At module level, the modules that declare commands import only the standard library,
slapos.cli, slapos.errors and slapos.version; everything heavy (requests, the engines,
IPython...) is imported inside the handler that needs it, so that `slapos --help` stays
fast.
"""
