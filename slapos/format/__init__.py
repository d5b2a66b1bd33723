"""The node formatter and node set-up: `slapos node format|register|boot`.

config.py (FormatConfig from slapos.cfg), model.py (the computer description and its files),
plan.py (pure: config + host state -> actions), apply.py (actions -> the operating system),
netif.py (the only module reading network state), register.py, boot.py.
`configure local`, which drives format and grid, lives above them (slapos/cli/configure/).

Must not import slapos.cli.
"""
