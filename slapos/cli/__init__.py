"""The `slapos` command line: argparse only, import-light at module level.

Modules here import only the standard library and slapos.cli at module level; everything
heavy (requests, the engines, IPython...) is imported inside the handler that needs it, so
that `slapos --help` stays fast.
"""
